# Secrets, generated here and kept in Secrets Manager under the module's KMS key. They are also
# in the Terraform state (random_* results): keep the state in an encrypted, access-controlled
# backend (docs/deploy-aws.md).

# Keys every stored hash and seals the outbox: 48 letters and digits (Sesame wants 32+ bytes
# and 12+ distinct characters).
resource "random_password" "server_secret" {
  length  = 48
  special = false
}

# Sesame's [signing_keys] kek: base64 of 32 bytes.
resource "random_bytes" "kek" {
  length = 32
}

# Letters and digits only: both go into URLs (database_url, redis_url) unescaped, and RDS and
# ElastiCache refuse some punctuation.
resource "random_password" "db" {
  length  = 40
  special = false
}

resource "random_password" "redis" {
  length  = 64
  special = false
}

locals {
  # verify-full needs Amazon's RDS CA in the image (db_ca_file); without it `require` still
  # encrypts (rds.force_ssl = 1 refuses anything else) but does not check the certificate.
  db_tls = var.db_ca_file != null ? "sslmode=verify-full&sslrootcert=${urlencode(var.db_ca_file)}" : "sslmode=require"

  redis_host = var.redis_cluster_mode ? aws_elasticache_replication_group.this.configuration_endpoint_address : aws_elasticache_replication_group.this.primary_endpoint_address

  # Names and descriptions apart from the values: for_each may not iterate over sensitive values.
  secret_descriptions = {
    server_secret     = "Sesame server_secret (SESAME__SERVER_SECRET): keys stored hashes and seals the outbox"
    kek               = "Sesame signing_keys.kek (SESAME__SIGNING_KEYS__KEK): encrypts the private signing keys in Postgres"
    database_password = "Password of the RDS master user sesame (for operators; Sesame reads database_url)"
    database_url      = "Sesame database.url (SESAME__DATABASE__URL), with the password and TLS"
    redis_auth_token  = "ElastiCache AUTH token (for operators; Sesame reads redis_url)"
    redis_url         = "Sesame redis.url (SESAME__REDIS__URL): rediss:// with the AUTH token"
  }

  secret_values = {
    server_secret     = random_password.server_secret.result
    kek               = random_bytes.kek.base64
    database_password = random_password.db.result
    database_url      = "postgres://${aws_db_instance.this.username}:${random_password.db.result}@${aws_db_instance.this.address}:${aws_db_instance.this.port}/${aws_db_instance.this.db_name}?${local.db_tls}"
    redis_auth_token  = random_password.redis.result
    redis_url         = "rediss://:${random_password.redis.result}@${local.redis_host}:${aws_elasticache_replication_group.this.port}"
  }
}

resource "aws_secretsmanager_secret" "this" {
  #checkov:skip=CKV2_AWS_57:No rotation Lambda: Sesame reads these at task start, and server_secret and kek cannot be rotated in place (stored hashes and sealed keys depend on them). The supported procedures (database password, Redis token, signing keys) are in docs/deploy-aws.md.
  for_each = local.secret_descriptions

  name                    = "${var.name}/${each.key}"
  description             = each.value
  kms_key_id              = aws_kms_key.this.arn
  recovery_window_in_days = var.secret_recovery_window_days
  tags                    = local.tags
}

resource "aws_secretsmanager_secret_version" "this" {
  for_each = local.secret_descriptions

  secret_id     = aws_secretsmanager_secret.this[each.key].id
  secret_string = local.secret_values[each.key]
}

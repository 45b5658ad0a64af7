# Sesame on ECS Fargate behind an ALB, with RDS for PostgreSQL, ElastiCache for Redis, SES and
# SNS. docs/deploy-aws.md walks through it from an empty account.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

data "aws_subnet" "public" {
  for_each = toset(var.public_subnet_ids)
  id       = each.value
}

locals {
  account   = data.aws_caller_identity.current.account_id
  partition = data.aws_partition.current.partition
  region    = data.aws_region.current.region

  database_subnet_ids = length(var.database_subnet_ids) > 0 ? var.database_subnet_ids : var.private_subnet_ids
  trusted_proxies     = var.trusted_proxy_cidrs != null ? var.trusted_proxy_cidrs : sort([for s in data.aws_subnet.public : s.cidr_block])

  # The ECR repository of var.image (validated as an ECR URI), for the execution role's pull.
  image_parts    = regex("^([0-9]{12})\\.dkr\\.ecr\\.([a-z0-9-]+)\\.amazonaws\\.com(?:\\.cn)?/([^:@]+)", var.image)
  ecr_repository = "arn:${local.partition}:ecr:${local.image_parts[1]}:${local.image_parts[0]}:repository/${local.image_parts[2]}"

  stop_timeout = min(var.shutdown_grace_secs + 20, 120)

  tags = merge({ "app" = "sesame", "sesame:deployment" = var.name }, var.tags)
}

# ---------------------------------------------------------------------------------------------
# Sesame's configuration
#
# Secrets come as SESAME__… variables from Secrets Manager (the task definition's `secrets`).
# Everything else is a TOML file: Sesame reads lists (trusted_proxies, sms_allowed_countries)
# only from its file, since its environment layer has no list syntax, and the file keeps values
# such as "+15555550100" strings (the environment layer would parse that one as a number). The
# image has no writable file system (readonlyRootFilesystem), so the entry point hands the TOML
# over as a pipe: `--config <(printf '%s' "$SESAME_CONFIG_TOML")`. SESAME_CONFIG_TOML has a
# single underscore after SESAME: it is not a setting, and Sesame does not warn about it.
# ---------------------------------------------------------------------------------------------

locals {
  issuer = "https://${var.domain_name}/"

  # compact() drops the lines of unset options.
  config_toml = join("\n", compact([
    "# Written by deploy/terraform (${var.name}); secrets come as SESAME__ variables.",
    "issuer = ${jsonencode(local.issuer)}",
    "listen = \"0.0.0.0:8080\"",
    # Off the load balancer: only the task's own network namespace (the metrics sidecar) sees it.
    "metrics_listen = \"127.0.0.1:9100\"",
    "store = \"postgres\"",
    "rate_limit = \"redis\"",
    "email = \"ses\"",
    "sms = \"sns\"",
    "log_format = \"json\"",
    "shutdown_grace_secs = ${var.shutdown_grace_secs}",
    "trusted_proxies = ${jsonencode(local.trusted_proxies)}",
    "[redis]",
    "cluster = ${var.redis_cluster_mode}",
    "[ses]",
    "from_address = ${jsonencode(var.from_address)}",
    var.from_name != null ? "from_name = ${jsonencode(var.from_name)}" : "",
    "configuration_set = ${jsonencode(aws_sesv2_configuration_set.this.configuration_set_name)}",
    "region = ${jsonencode(local.region)}",
    "[sns]",
    "region = ${jsonencode(local.region)}",
    var.sms_sender_id != null ? "sender_id = ${jsonencode(var.sms_sender_id)}" : "",
    var.sms_origination_number != null ? "origination_number = ${jsonencode(var.sms_origination_number)}" : "",
    length(var.sms_allowed_countries) > 0 ? "[limits]\nsms_allowed_countries = ${jsonencode(var.sms_allowed_countries)}" : "",
    var.extra_config_toml,
  ]))

  # ECS puts entryPoint before command, as Docker does: `bash -c SCRIPT sesame ARGS…` runs
  # `sesame --config <pipe> ARGS…`, so a task's command (or a run-task override) is Sesame's
  # own arguments: ["serve"], ["migrate"], ["client", "create", "--name", "Web"]. `exec` makes
  # Sesame the process that gets SIGTERM (behind the init process, initProcessEnabled).
  entry_point = [
    "/bin/bash",
    "-c",
    "exec /usr/local/bin/sesame --config <(printf '%s\\n' \"$SESAME_CONFIG_TOML\") \"$@\"",
    "sesame",
  ]

  # Secrets injected into the containers: Sesame's variable name => secret key (secrets.tf).
  injected_secrets = {
    SESAME__SERVER_SECRET     = "server_secret"
    SESAME__SIGNING_KEYS__KEK = "kek"
    SESAME__DATABASE__URL     = "database_url"
    SESAME__REDIS__URL        = "redis_url"
  }
}

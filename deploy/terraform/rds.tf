# RDS for PostgreSQL: encrypted with the module's key, TLS forced, Multi-AZ by variable,
# automated backups (point-in-time recovery), deletion protection and a final snapshot.

locals {
  db_major  = split(".", var.db_engine_version)[0]
  db_family = "postgres${local.db_major}"
}

resource "aws_db_subnet_group" "this" {
  name       = var.name
  subnet_ids = local.database_subnet_ids
  tags       = local.tags
}

resource "aws_db_parameter_group" "this" {
  name_prefix = "${var.name}-${local.db_family}-"
  family      = local.db_family
  description = "Sesame: TLS only"
  tags        = local.tags

  # Refuse every connection that is not TLS.
  parameter {
    name         = "rds.force_ssl"
    value        = "1"
    apply_method = "immediate"
  }

  # Slow statements only (with their durations): Sesame's statements are short (a 5 s
  # statement_timeout), so one over a second is worth a look. Their texts carry no values
  # (Sesame sends binds), and the bind values, which hold email addresses and phone numbers,
  # are left out of these log lines.
  parameter {
    name         = "log_min_duration_statement"
    value        = "1000"
    apply_method = "immediate"
  }

  parameter {
    name         = "log_parameter_max_length"
    value        = "0"
    apply_method = "immediate"
  }

  lifecycle {
    create_before_destroy = true
  }
}

# RDS writes its exported logs to these groups; made here for the retention and the key.
resource "aws_cloudwatch_log_group" "rds" {
  for_each = toset(["postgresql", "upgrade"])

  name              = "/aws/rds/instance/${var.name}/${each.value}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.this.arn
  tags              = local.tags
}

resource "aws_db_instance" "this" {
  #checkov:skip=CKV2_AWS_30:Logging every statement (log_statement = all) would log bound parameters, which hold users' email addresses and phone numbers; the parameter group logs statements slower than 1 s instead.
  identifier     = var.name
  engine         = "postgres"
  engine_version = var.db_engine_version
  instance_class = var.db_instance_class

  db_name  = "sesame"
  username = "sesame"
  password = random_password.db.result
  port     = 5432

  allocated_storage     = var.db_allocated_storage
  max_allocated_storage = var.db_max_allocated_storage
  storage_type          = "gp3"
  storage_encrypted     = true
  kms_key_id            = aws_kms_key.this.arn

  db_subnet_group_name   = aws_db_subnet_group.this.name
  vpc_security_group_ids = [aws_security_group.db.id]
  publicly_accessible    = false
  parameter_group_name   = aws_db_parameter_group.this.name
  ca_cert_identifier     = "rds-ca-rsa2048-g1"
  multi_az               = var.db_multi_az

  iam_database_authentication_enabled = var.db_iam_authentication

  backup_retention_period   = var.db_backup_retention_days
  backup_window             = "03:00-04:00"
  maintenance_window        = "sun:04:30-sun:05:30"
  copy_tags_to_snapshot     = true
  deletion_protection       = var.db_deletion_protection
  skip_final_snapshot       = false
  final_snapshot_identifier = "${var.name}-final"
  delete_automated_backups  = false

  auto_minor_version_upgrade  = true
  allow_major_version_upgrade = false
  apply_immediately           = false

  performance_insights_enabled          = true
  performance_insights_kms_key_id       = aws_kms_key.this.arn
  performance_insights_retention_period = 7
  monitoring_interval                   = 60
  monitoring_role_arn                   = aws_iam_role.rds_monitoring.arn
  enabled_cloudwatch_logs_exports       = ["postgresql", "upgrade"]

  tags = local.tags

  depends_on = [aws_cloudwatch_log_group.rds]
}

# Enhanced Monitoring: RDS's agent publishes OS metrics with this role (AWS's managed policy,
# which writes only to the RDSOSMetrics log group).
resource "aws_iam_role" "rds_monitoring" {
  name_prefix        = "${var.name}-rds-mon-"
  assume_role_policy = data.aws_iam_policy_document.rds_monitoring_assume.json
  tags               = local.tags
}

data "aws_iam_policy_document" "rds_monitoring_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["monitoring.rds.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
  }
}

resource "aws_iam_role_policy_attachment" "rds_monitoring" {
  role       = aws_iam_role.rds_monitoring.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

# One customer managed key for everything the module stores: the secrets, the log groups, the
# RDS storage and Performance Insights, ElastiCache at rest, ECS Exec sessions. Yearly rotation.

resource "aws_kms_key" "this" {
  description             = "${var.name}: Sesame's secrets, logs, database and cache"
  enable_key_rotation     = true
  rotation_period_in_days = 365
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
  tags                    = local.tags
}

resource "aws_kms_alias" "this" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.this.key_id
}

data "aws_iam_policy_document" "kms" {
  # The account administers the key, and IAM policies decide who else uses it: the execution
  # role (secrets.tf) decrypts through Secrets Manager only. A key policy names no other
  # resource than the key itself, hence "*".
  #checkov:skip=CKV_AWS_109:A key policy's Resource "*" is the key itself; this is the account's administration statement that lets IAM policies grant use of the key (AWS's default key policy).
  #checkov:skip=CKV_AWS_111:A key policy's Resource "*" is the key itself; this is the account's administration statement that lets IAM policies grant use of the key (AWS's default key policy).
  #checkov:skip=CKV_AWS_356:A key policy's Resource "*" is the key itself, not every resource of the account.
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account}:root"]
    }
  }

  # CloudWatch Logs encrypts this account's log groups in this region with it (the module's
  # groups, RDS's exported logs, the example's VPC flow logs).
  statement {
    sid = "CloudWatchLogs"
    actions = [
      "kms:Encrypt*",
      "kms:Decrypt*",
      "kms:ReEncrypt*",
      "kms:GenerateDataKey*",
      "kms:Describe*",
    ]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }

    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${local.region}:${local.account}:log-group:*"]
    }
  }
}

# Sesame from an empty account: this VPC, the module, an SNS topic for the alarms.
# docs/deploy-aws.md walks through it.

module "sesame" {
  source = "../.."

  name               = var.name
  image              = var.image
  domain_name        = var.domain_name
  certificate_arn    = var.certificate_arn
  route53_zone_id    = var.route53_zone_id
  email_domain       = var.email_domain
  from_address       = var.from_address
  from_name          = "Sesame"
  alarm_actions      = [aws_sns_topic.alarms.arn]
  db_multi_az        = var.db_multi_az
  redis_cluster_mode = var.redis_cluster_mode

  sms_monthly_spend_limit = var.sms_monthly_spend_limit
  sms_allowed_countries   = var.sms_allowed_countries

  vpc_id             = aws_vpc.this.id
  public_subnet_ids  = aws_subnet.public[*].id
  private_subnet_ids = aws_subnet.private[*].id
}

# Alarm notifications. CloudWatch cannot publish to a topic encrypted with the AWS managed SNS
# key, so the topic has a customer managed key whose policy lets CloudWatch use it.
resource "aws_kms_key" "alarms" {
  description             = "${var.name}: alarm notifications"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.alarms_key.json
}

data "aws_iam_policy_document" "alarms_key" {
  #checkov:skip=CKV_AWS_109:A key policy's Resource "*" is the key itself; this is the account's administration statement (AWS's default key policy).
  #checkov:skip=CKV_AWS_111:A key policy's Resource "*" is the key itself; this is the account's administration statement (AWS's default key policy).
  #checkov:skip=CKV_AWS_356:A key policy's Resource "*" is the key itself, not every resource of the account.
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:aws:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }

  statement {
    sid       = "CloudWatchPublishes"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey*"]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_sns_topic" "alarms" {
  name              = "${var.name}-alarms"
  kms_master_key_id = aws_kms_key.alarms.arn
}

resource "aws_sns_topic_subscription" "alarm_email" {
  count = var.alarm_email == null ? 0 : 1

  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = var.alarm_email
}

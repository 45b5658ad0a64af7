# Two roles for the service, one for the one-off tasks' pull, none with more than it uses:
#   execution role: pull the image from its ECR repository, write the task's logs, read the
#                   four secrets injected into Sesame (and decrypt them with the module's key);
#   task role:      what Sesame itself calls: SES SendEmail on its identity and configuration
#                   set, SNS Publish to phone numbers; the metrics sidecar's log writes.
# The migrate/admin task definition has no task role: migrations and `sesame client …` talk to
# Postgres only.

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${local.partition}:ecs:${local.region}:${local.account}:*"]
    }
  }
}

# --- execution role --------------------------------------------------------------------------

resource "aws_iam_role" "execution" {
  name_prefix        = "${var.name}-exec-"
  description        = "ECS execution role of ${var.name}: image pull, logs, Sesame's secrets"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = local.tags
}

data "aws_iam_policy_document" "execution" {
  # GetAuthorizationToken has no resource-level permissions: AWS accepts only "*" for it.
  #checkov:skip=CKV_AWS_356:ecr:GetAuthorizationToken supports no resource-level permission (Resource must be "*"); every other statement names its resources.
  statement {
    sid       = "EcrLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid = "EcrPull"
    actions = [
      "ecr:BatchCheckLayerAvailability",
      "ecr:BatchGetImage",
      "ecr:GetDownloadUrlForLayer",
    ]
    resources = [local.ecr_repository]
  }

  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.app.arn}:*"]
  }

  statement {
    sid       = "ReadSesameSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [for key in distinct(values(local.injected_secrets)) : aws_secretsmanager_secret.this[key].arn]
  }

  statement {
    sid       = "DecryptSecrets"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.this.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["secretsmanager.${local.region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "execution" {
  name   = "execution"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}

# --- task role -------------------------------------------------------------------------------

resource "aws_iam_role" "task" {
  name_prefix        = "${var.name}-task-"
  description        = "Task role of ${var.name}: SES on its identity, SNS SMS to phone numbers"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = local.tags
}

data "aws_iam_policy_document" "task" {
  #checkov:skip=CKV_AWS_356:sns:Publish to a phone number is authorised on Resource "*" (AWS has no ARN for a phone number); the Deny statement below removes every topic and endpoint ARN from it.
  #checkov:skip=CKV_AWS_111:Same statement: SMS publishing needs Resource "*"; topics and endpoints are denied below, so only direct SMS remains.

  # SESv2 SendEmail is authorised against the sending identity and the configuration set.
  statement {
    sid     = "SendEmailFromSesameIdentity"
    actions = ["ses:SendEmail", "ses:SendRawEmail"]
    resources = [
      aws_sesv2_email_identity.this.arn,
      aws_sesv2_configuration_set.this.arn,
    ]
  }

  # An SMS is sns:Publish with a PhoneNumber, which IAM authorises on Resource "*": a phone
  # number has no ARN, so no resource or condition key can name "phone numbers only". What can
  # be done is below: deny Publish on every ARN SNS has (topics, platform endpoints), which
  # leaves only direct SMS.
  statement {
    sid       = "PublishSmsToPhoneNumbers"
    actions   = ["sns:Publish"]
    resources = ["*"]
  }

  # Why: with Resource "*" above, Publish would also reach any SNS topic of any account that
  # allows it (fan-out to subscribers, or a topic used to exfiltrate). Topics and endpoints all
  # have ARNs of the form arn:aws:sns:REGION:ACCOUNT:NAME; an SMS to a phone number has none,
  # so this Deny blocks every topic and endpoint and leaves SMS alone.
  statement {
    sid       = "DenyPublishToTopics"
    effect    = "Deny"
    actions   = ["sns:Publish"]
    resources = ["arn:${local.partition}:sns:*:*:*"]
  }

  dynamic "statement" {
    for_each = var.enable_metrics_sidecar ? [1] : []
    content {
      sid       = "MetricsSidecarLogs"
      actions   = ["logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"]
      resources = ["${aws_cloudwatch_log_group.metrics.arn}:*"]
    }
  }
}

resource "aws_iam_role_policy" "task" {
  name   = "sesame"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.task.json
}

# Email: an SES domain identity with Easy DKIM (2048-bit keys) and a configuration set (TLS
# required to the receiving server, reputation metrics, bounces and complaints suppressed).
# The identity is verified once its three DKIM CNAMEs are published (route53_zone_id, or by
# hand from the ses_dkim_records output). Leaving the SES sandbox is a request to AWS, not a
# resource: docs/deploy-aws.md.

resource "aws_sesv2_configuration_set" "this" {
  configuration_set_name = var.name

  delivery_options {
    tls_policy = "REQUIRE"
  }

  reputation_options {
    reputation_metrics_enabled = true
  }

  sending_options {
    sending_enabled = true
  }

  suppression_options {
    suppressed_reasons = ["BOUNCE", "COMPLAINT"]
  }

  tags = local.tags
}

resource "aws_sesv2_email_identity" "this" {
  email_identity         = var.email_domain
  configuration_set_name = aws_sesv2_configuration_set.this.configuration_set_name

  dkim_signing_attributes {
    next_signing_key_length = "RSA_2048_BIT"
  }

  tags = local.tags

  lifecycle {
    precondition {
      condition     = endswith(lower(var.from_address), "@${lower(var.email_domain)}")
      error_message = "from_address must be an address at email_domain: the task role may send from that identity only."
    }
  }
}

locals {
  dkim_tokens = aws_sesv2_email_identity.this.dkim_signing_attributes[0].tokens
  dkim_records = {
    for i in range(3) : "dkim${i}" => {
      name  = "${local.dkim_tokens[i]}._domainkey.${var.email_domain}"
      type  = "CNAME"
      value = "${local.dkim_tokens[i]}.dkim.amazonses.com"
    }
  }
}

# SMS: the account's SNS preferences. Sesame marks every message Transactional itself; the
# default covers anything else, and the spend limit caps a month of SMS for the whole account
# (SMS pumping stops there at worst). These preferences are one per account and region, shared
# with any other user of SNS SMS in it (manage_sms_preferences = false leaves them alone).
resource "aws_sns_sms_preferences" "this" {
  count = var.manage_sms_preferences ? 1 : 0

  default_sms_type    = "Transactional"
  monthly_spend_limit = var.sms_monthly_spend_limit
  default_sender_id   = var.sms_sender_id
}

# Optional: with route53_zone_id, the service's alias record and SES's DKIM CNAMEs.

resource "aws_route53_record" "service" {
  count = var.route53_zone_id == null ? 0 : 1

  zone_id = var.route53_zone_id
  name    = var.domain_name
  type    = "A"

  alias {
    name                   = aws_lb.this.dns_name
    zone_id                = aws_lb.this.zone_id
    evaluate_target_health = true
  }
}

resource "aws_route53_record" "dkim" {
  for_each = var.route53_zone_id == null ? {} : local.dkim_records

  zone_id = var.route53_zone_id
  name    = each.value.name
  type    = each.value.type
  ttl     = 1800
  records = [each.value.value]
}

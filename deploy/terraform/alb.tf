# Internet-facing ALB: TLS ends here (Sesame speaks plain HTTP inside the VPC); HTTP only
# redirects. Targets are the tasks' IPs on 8080, healthy while GET /readyz answers 200 (a
# "degraded" replica still answers 200: taking it out would only move the load onto replicas
# that share its Redis and provider, docs/operations.md).

resource "aws_lb" "this" {
  #checkov:skip=CKV_AWS_91:Access logs would store whole request URLs, and a magic link's query string is a login secret (Sesame keeps query strings out of its own logs); opt in with alb_access_logs_bucket.
  #checkov:skip=CKV2_AWS_28:WAF is optional (waf_web_acl_arn): common managed rule sets block URLs in query strings, which /authorize carries (redirect_uri); Sesame rate-limits starts and exchanges itself.
  #checkov:skip=CKV2_AWS_76:No WAF by default (see CKV2_AWS_28); Sesame is not a Java application (Log4j).
  name                       = var.name
  internal                   = false
  load_balancer_type         = "application"
  security_groups            = [aws_security_group.alb.id]
  subnets                    = var.public_subnet_ids
  drop_invalid_header_fields = true
  enable_deletion_protection = var.alb_deletion_protection
  desync_mitigation_mode     = "strictest"
  idle_timeout               = 60
  tags                       = local.tags

  dynamic "access_logs" {
    for_each = var.alb_access_logs_bucket == null ? [] : [var.alb_access_logs_bucket]
    content {
      bucket  = access_logs.value
      prefix  = var.name
      enabled = true
    }
  }
}

resource "aws_lb_target_group" "this" {
  #checkov:skip=CKV_AWS_378:TLS ends at the ALB; Sesame has no TLS listener ("TLS belongs in front of Sesame", docs/operations.md) and the hop stays inside the VPC, between two security groups.
  name                 = var.name
  port                 = 8080
  protocol             = "HTTP"
  target_type          = "ip"
  vpc_id               = var.vpc_id
  deregistration_delay = var.deregistration_delay
  tags                 = local.tags

  health_check {
    enabled             = true
    path                = "/readyz"
    port                = "traffic-port"
    protocol            = "HTTP"
    matcher             = "200"
    interval            = 10
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }
}

resource "aws_lb_listener" "https" {
  load_balancer_arn = aws_lb.this.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = var.ssl_policy
  certificate_arn   = var.certificate_arn
  tags              = local.tags

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.this.arn
  }
}

resource "aws_lb_listener" "http" {
  load_balancer_arn = aws_lb.this.arn
  port              = 80
  protocol          = "HTTP"
  tags              = local.tags

  default_action {
    type = "redirect"

    redirect {
      port        = "443"
      protocol    = "HTTPS"
      status_code = "HTTP_301"
    }
  }
}

resource "aws_wafv2_web_acl_association" "this" {
  count = var.waf_web_acl_arn == null ? 0 : 1

  resource_arn = aws_lb.this.arn
  web_acl_arn  = var.waf_web_acl_arn
}

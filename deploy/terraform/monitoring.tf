# CloudWatch alarms after docs/operations.md's "What to alert on":
#   5xx rate and p99 latency from the ALB's own metrics; readiness from the target group's
#   UnHealthyHostCount (a task whose /readyz answers 503); the stuck outbox from
#   sesame_outbox_oldest_pending_seconds, which only the metrics sidecar (ecs.tf) brings into
#   CloudWatch: without it (enable_metrics_sidecar = false) that alarm is not created.

locals {
  alb_dimensions = { LoadBalancer = aws_lb.this.arn_suffix }
  tg_dimensions  = { LoadBalancer = aws_lb.this.arn_suffix, TargetGroup = aws_lb_target_group.this.arn_suffix }
}

resource "aws_cloudwatch_metric_alarm" "http_5xx" {
  alarm_name          = "${var.name}-5xx-rate"
  alarm_description   = "More than ${var.alarm_5xx_percent}% of requests answered 5xx (by Sesame or by the load balancer) over 5 minutes: dependency outage or a bug (docs/operations.md, runbook)."
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.alarm_5xx_percent
  evaluation_periods  = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
  tags                = local.tags

  metric_query {
    id          = "rate"
    expression  = "IF(requests > 0, 100 * (FILL(target5xx, 0) + FILL(elb5xx, 0)) / requests, 0)"
    label       = "5xx percent"
    return_data = true
  }

  metric_query {
    id = "requests"
    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "RequestCount"
      dimensions  = local.alb_dimensions
      period      = 300
      stat        = "Sum"
    }
  }

  metric_query {
    id = "target5xx"
    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "HTTPCode_Target_5XX_Count"
      dimensions  = local.alb_dimensions
      period      = 300
      stat        = "Sum"
    }
  }

  metric_query {
    id = "elb5xx"
    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "HTTPCode_ELB_5XX_Count"
      dimensions  = local.alb_dimensions
      period      = 300
      stat        = "Sum"
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "latency_p99" {
  alarm_name          = "${var.name}-p99-latency"
  alarm_description   = "p99 TargetResponseTime above ${var.alarm_p99_latency_seconds} s over 5 minutes: store or limiter slow, or SMS first attempts slow (docs/operations.md)."
  namespace           = "AWS/ApplicationELB"
  metric_name         = "TargetResponseTime"
  dimensions          = local.tg_dimensions
  extended_statistic  = "p99"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.alarm_p99_latency_seconds
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
  tags                = local.tags
}

resource "aws_cloudwatch_metric_alarm" "unhealthy" {
  alarm_name          = "${var.name}-not-ready"
  alarm_description   = "A task fails its /readyz check (503: store down or no signing key) for 2 minutes; `/readyz` lists the failing check, the log says why (docs/operations.md, runbook)."
  namespace           = "AWS/ApplicationELB"
  metric_name         = "UnHealthyHostCount"
  dimensions          = local.tg_dimensions
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 2
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
  tags                = local.tags
}

resource "aws_cloudwatch_metric_alarm" "no_healthy_task" {
  alarm_name          = "${var.name}-no-healthy-task"
  alarm_description   = "No task passes /readyz: no login can be served."
  namespace           = "AWS/ApplicationELB"
  metric_name         = "HealthyHostCount"
  dimensions          = local.tg_dimensions
  statistic           = "Minimum"
  period              = 60
  evaluation_periods  = 2
  comparison_operator = "LessThanThreshold"
  threshold           = 1
  treat_missing_data  = "breaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
  tags                = local.tags
}

# Every replica reports the same value (the outbox is one table in Postgres), so Maximum over
# the tasks is the age. No data means the sidecar publishes nothing: that is reported too
# (insufficient_data_actions), since a broken metrics path would hide a stuck outbox.
resource "aws_cloudwatch_metric_alarm" "outbox_age" {
  count = var.enable_metrics_sidecar ? 1 : 0

  alarm_name                = "${var.name}-outbox-stuck"
  alarm_description         = "The oldest message waiting in the outbox is older than ${var.alarm_outbox_age_seconds} s: codes expire before they arrive (no delivery running, provider down or breaker open; docs/operations.md)."
  namespace                 = var.metrics_namespace
  metric_name               = "sesame_outbox_oldest_pending_seconds"
  dimensions                = { service = var.name }
  statistic                 = "Maximum"
  period                    = 60
  evaluation_periods        = 2
  comparison_operator       = "GreaterThanThreshold"
  threshold                 = var.alarm_outbox_age_seconds
  treat_missing_data        = "missing"
  alarm_actions             = var.alarm_actions
  ok_actions                = var.alarm_actions
  insufficient_data_actions = var.alarm_actions
  tags                      = local.tags
}

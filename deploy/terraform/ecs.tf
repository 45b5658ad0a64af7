# ECS Fargate: the cluster, the service (Sesame plus the optional metrics sidecar) and the
# one-off task definition for `sesame migrate` and the other admin commands.

resource "aws_cloudwatch_log_group" "app" {
  name              = "/${var.name}/ecs"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.this.arn
  tags              = local.tags
}

resource "aws_ecs_cluster" "this" {
  name = var.name
  tags = local.tags

  setting {
    name  = "containerInsights"
    value = "enabled"
  }

  # No service enables ECS Exec; should someone turn it on, sessions are encrypted with the
  # module's key and logged.
  configuration {
    execute_command_configuration {
      kms_key_id = aws_kms_key.this.arn
      logging    = "OVERRIDE"

      log_configuration {
        cloud_watch_encryption_enabled = true
        cloud_watch_log_group_name     = aws_cloudwatch_log_group.app.name
      }
    }
  }
}

resource "aws_ecs_cluster_capacity_providers" "this" {
  cluster_name       = aws_ecs_cluster.this.name
  capacity_providers = ["FARGATE"]

  default_capacity_provider_strategy {
    capacity_provider = "FARGATE"
    weight            = 1
  }
}

locals {
  secrets_env = [
    for env_name, key in local.injected_secrets : {
      name      = env_name
      valueFrom = aws_secretsmanager_secret.this[key].arn
    }
  ]

  log_options = {
    "awslogs-group"         = aws_cloudwatch_log_group.app.name
    "awslogs-region"        = local.region
    "mode"                  = "non-blocking"
    "max-buffer-size"       = "25m"
    "awslogs-stream-prefix" = "sesame"
  }

  # Sesame as the image runs it: user 10001 (the image's), read-only root file system, every
  # capability dropped, an init process in front (it forwards SIGTERM and reaps the shell's
  # child), and a stopTimeout above shutdown_grace_secs (docs/operations.md, Shutdown).
  sesame_container = {
    name                   = "sesame"
    image                  = var.image
    essential              = true
    user                   = "10001:10001"
    readonlyRootFilesystem = true
    entryPoint             = local.entry_point
    environment            = [{ name = "SESAME_CONFIG_TOML", value = local.config_toml }]
    secrets                = local.secrets_env
    stopTimeout            = local.stop_timeout
    linuxParameters = {
      initProcessEnabled = true
      capabilities       = { add = [], drop = ["ALL"] }
    }
    ulimits = [{ name = "nofile", softLimit = 65536, hardLimit = 65536 }]
  }

  # The CloudWatch agent scrapes Sesame's /metrics (127.0.0.1:9100, inside the task only) every
  # 30 s and sends the outbox and signing-key gauges to CloudWatch as embedded-metric-format
  # log events, which become metrics in var.metrics_namespace with the dimension
  # service = var.name. ECS does not scrape Prometheus endpoints by itself; this is how the
  # outbox alarm (monitoring.tf) gets sesame_outbox_oldest_pending_seconds.
  prometheus_config = yamlencode({
    global = { scrape_interval = "30s", scrape_timeout = "10s" }
    scrape_configs = [{
      job_name       = "sesame"
      metrics_path   = "/metrics"
      static_configs = [{ targets = ["127.0.0.1:9100"], labels = { service = var.name } }]
    }]
  })

  cwagent_config = jsonencode({
    agent = { region = local.region }
    logs = {
      force_flush_interval = 5
      metrics_collected = {
        prometheus = {
          log_group_name         = aws_cloudwatch_log_group.metrics.name
          prometheus_config_path = "env:PROMETHEUS_CONFIG_CONTENT"
          emf_processor = {
            metric_namespace = var.metrics_namespace
            metric_declaration = [{
              source_labels = ["job"]
              label_matcher = "^sesame$"
              dimensions    = [["service"]]
              metric_selectors = [
                "^sesame_outbox_oldest_pending_seconds$",
                "^sesame_outbox_pending$",
                "^sesame_signing_key_age_seconds$",
              ]
            }]
          }
        }
      }
    }
  })

  metrics_sidecar = {
    name      = "cloudwatch-agent"
    image     = var.cloudwatch_agent_image
    essential = false
    # The agent writes its translated configuration under /opt/aws at start.
    readonlyRootFilesystem = false
    environment = [
      { name = "CW_CONFIG_CONTENT", value = local.cwagent_config },
      { name = "PROMETHEUS_CONFIG_CONTENT", value = local.prometheus_config },
    ]
    linuxParameters = { capabilities = { add = [], drop = ["ALL"] } }
    logConfiguration = {
      logDriver = "awslogs"
      options   = merge(local.log_options, { "awslogs-stream-prefix" = "cloudwatch-agent" })
    }
  }
}

resource "aws_cloudwatch_log_group" "metrics" {
  name              = "/${var.name}/metrics"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.this.arn
  tags              = local.tags
}

resource "aws_ecs_task_definition" "service" {
  #checkov:skip=CKV_AWS_336:The Sesame container has readonlyRootFilesystem = true; only the optional CloudWatch agent sidecar has a writable root, since it writes its translated configuration under /opt/aws at start.
  family                   = var.name
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.task_cpu
  memory                   = var.task_memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn
  tags                     = local.tags

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }

  container_definitions = jsonencode(concat(
    [merge(local.sesame_container, {
      command      = ["serve"]
      portMappings = [{ name = "http", containerPort = 8080, protocol = "tcp" }]
      # Liveness as the image's HEALTHCHECK (ECS ignores the image's): /healthz, no I/O, so a
      # store outage does not restart every task; readiness (/readyz) is the ALB's.
      healthCheck = {
        command     = ["CMD", "bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
        interval    = 10
        timeout     = 3
        retries     = 3
        startPeriod = 10
      }
      logConfiguration = { logDriver = "awslogs", options = local.log_options }
    })],
    var.enable_metrics_sidecar ? [local.metrics_sidecar] : [],
  ))
}

# `sesame migrate` (and, with a command override, `client …`, `keys …`, `connection …`): the
# same image and configuration, no port, no load balancer, no AWS permissions (no task role).
resource "aws_ecs_task_definition" "migrate" {
  family                   = "${var.name}-migrate"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = 256
  memory                   = 512
  execution_role_arn       = aws_iam_role.execution.arn
  tags                     = local.tags

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }

  container_definitions = jsonencode([merge(local.sesame_container, {
    # The image's ENTRYPOINT is sesame itself (here: the entryPoint above), so the command is
    # Sesame's arguments: ["migrate"], not ["sesame", "migrate"].
    command = ["migrate"]
    logConfiguration = {
      logDriver = "awslogs"
      options   = merge(local.log_options, { "awslogs-stream-prefix" = "migrate" })
    }
  })])
}

resource "aws_ecs_service" "this" {
  name                               = var.name
  cluster                            = aws_ecs_cluster.this.id
  task_definition                    = aws_ecs_task_definition.service.arn
  desired_count                      = var.desired_count
  launch_type                        = "FARGATE"
  platform_version                   = "LATEST"
  health_check_grace_period_seconds  = 30
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  enable_ecs_managed_tags            = true
  propagate_tags                     = "SERVICE"
  enable_execute_command             = false
  wait_for_steady_state              = false
  tags                               = local.tags

  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = [aws_security_group.tasks.id]
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.this.arn
    container_name   = "sesame"
    container_port   = 8080
  }

  # A rolling deployment: new tasks must pass /readyz before old ones drain; a deployment whose
  # tasks never get healthy is rolled back to the previous task definition.
  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  lifecycle {
    # Autoscaling owns the count once the service exists.
    ignore_changes = [desired_count]
  }

  depends_on = [aws_lb_listener.https, aws_iam_role_policy.execution]
}

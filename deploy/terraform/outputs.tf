output "alb_dns_name" {
  description = "DNS name of the load balancer: point domain_name at it (an alias record), unless route53_zone_id did."
  value       = aws_lb.this.dns_name
}

output "alb_zone_id" {
  description = "Hosted zone of the load balancer, for an alias record."
  value       = aws_lb.this.zone_id
}

output "issuer" {
  description = "Sesame's issuer: the Auth0 SDKs' domain is its host."
  value       = local.issuer
}

output "cluster_name" {
  description = "ECS cluster."
  value       = aws_ecs_cluster.this.name
}

output "service_name" {
  description = "ECS service."
  value       = aws_ecs_service.this.name
}

output "task_definition_arn" {
  description = "Task definition of the service (Sesame serve)."
  value       = aws_ecs_task_definition.service.arn
}

output "migrate_task_definition_arn" {
  description = "One-off task definition running `sesame migrate`; override its command for `client …`, `keys …`, `connection …`."
  value       = aws_ecs_task_definition.migrate.arn
}

output "run_task_network_configuration" {
  description = "The --network-configuration of `aws ecs run-task` for the migrate task (private subnets, the tasks' security group)."
  value = jsonencode({
    awsvpcConfiguration = {
      subnets        = var.private_subnet_ids
      securityGroups = [aws_security_group.tasks.id]
      assignPublicIp = "DISABLED"
    }
  })
}

output "log_group_name" {
  description = "CloudWatch log group of the service and of the one-off tasks (JSON lines)."
  value       = aws_cloudwatch_log_group.app.name
}

output "secret_arns" {
  description = "Secrets Manager ARNs by name: server_secret, kek, database_password, database_url, redis_auth_token, redis_url."
  value       = { for k, s in aws_secretsmanager_secret.this : k => s.arn }
}

output "kms_key_arn" {
  description = "The module's KMS key (secrets, logs, RDS, ElastiCache)."
  value       = aws_kms_key.this.arn
}

output "db_instance_identifier" {
  description = "RDS instance, for snapshots and point-in-time restores."
  value       = aws_db_instance.this.identifier
}

output "db_address" {
  description = "RDS endpoint host."
  value       = aws_db_instance.this.address
}

output "redis_endpoint" {
  description = "ElastiCache endpoint (the configuration endpoint in cluster mode)."
  value       = local.redis_host
}

output "ses_identity_arn" {
  description = "SES domain identity."
  value       = aws_sesv2_email_identity.this.arn
}

output "ses_configuration_set" {
  description = "SES configuration set Sesame sends with."
  value       = aws_sesv2_configuration_set.this.configuration_set_name
}

output "ses_dkim_tokens" {
  description = "SES Easy DKIM tokens of email_domain."
  value       = local.dkim_tokens
}

output "ses_dkim_records" {
  description = "The three CNAME records that verify email_domain in SES (created when route53_zone_id is set)."
  value       = [for r in values(local.dkim_records) : r]
}

output "task_role_arn" {
  description = "Task role of the service (SES, SNS)."
  value       = aws_iam_role.task.arn
}

output "execution_role_arn" {
  description = "Execution role (image pull, logs, secrets)."
  value       = aws_iam_role.execution.arn
}

output "security_group_ids" {
  description = "Security groups by role: alb, tasks, db, redis."
  value = {
    alb   = aws_security_group.alb.id
    tasks = aws_security_group.tasks.id
    db    = aws_security_group.db.id
    redis = aws_security_group.redis.id
  }
}

output "alb_dns_name" {
  description = "Point domain_name here (done when route53_zone_id is set)."
  value       = module.sesame.alb_dns_name
}

output "issuer" {
  description = "Sesame's issuer."
  value       = module.sesame.issuer
}

output "cluster_name" {
  description = "ECS cluster."
  value       = module.sesame.cluster_name
}

output "service_name" {
  description = "ECS service."
  value       = module.sesame.service_name
}

output "migrate_task_definition_arn" {
  description = "One-off task definition (`sesame migrate`, admin commands by override)."
  value       = module.sesame.migrate_task_definition_arn
}

output "run_task_network_configuration" {
  description = "--network-configuration for aws ecs run-task."
  value       = module.sesame.run_task_network_configuration
}

output "log_group_name" {
  description = "Log group of the service and of the one-off tasks."
  value       = module.sesame.log_group_name
}

output "secret_arns" {
  description = "Secrets Manager ARNs."
  value       = module.sesame.secret_arns
}

output "ses_dkim_records" {
  description = "DKIM CNAMEs of email_domain."
  value       = module.sesame.ses_dkim_records
}

output "db_instance_identifier" {
  description = "RDS instance."
  value       = module.sesame.db_instance_identifier
}

output "alarm_topic_arn" {
  description = "SNS topic the alarms notify."
  value       = aws_sns_topic.alarms.arn
}

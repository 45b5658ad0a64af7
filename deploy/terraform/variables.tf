# ---------------------------------------------------------------------------------------------
# Identity and image
# ---------------------------------------------------------------------------------------------

variable "name" {
  description = "Name of this deployment: prefix of every resource, ECS family and secret name. Lower case letters, digits and dashes."
  type        = string
  default     = "sesame"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,22}[a-z0-9]$", var.name))
    error_message = "name must be 3-24 lower case letters, digits and dashes, starting with a letter (IAM role name prefixes are at most 38 characters)."
  }
}

variable "image" {
  description = "Sesame's container image, built from deploy/Dockerfile and pushed to ECR: ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPOSITORY:TAG (or @sha256:DIGEST). The execution role may pull from that repository only."
  type        = string

  validation {
    condition     = can(regex("^[0-9]{12}\\.dkr\\.ecr\\.[a-z0-9-]+\\.amazonaws\\.com(\\.cn)?/[a-z0-9._/-]+(:[A-Za-z0-9._-]+|@sha256:[0-9a-f]{64})$", var.image))
    error_message = "image must be an ECR image URI with a tag or a digest (ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPOSITORY:TAG)."
  }
}

variable "cpu_architecture" {
  description = "CPU architecture the image was built for: X86_64 or ARM64 (Graviton)."
  type        = string
  default     = "X86_64"

  validation {
    condition     = contains(["X86_64", "ARM64"], var.cpu_architecture)
    error_message = "cpu_architecture must be X86_64 or ARM64."
  }
}

variable "tags" {
  description = "Tags added to every resource that takes tags."
  type        = map(string)
  default     = {}
}

# ---------------------------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------------------------

variable "vpc_id" {
  description = "VPC to deploy into."
  type        = string
}

variable "public_subnet_ids" {
  description = "Subnets of the internet-facing load balancer (at least two availability zones). Their CIDRs become Sesame's trusted_proxies."
  type        = list(string)

  validation {
    condition     = length(var.public_subnet_ids) >= 2
    error_message = "An ALB needs subnets in at least two availability zones."
  }
}

variable "private_subnet_ids" {
  description = "Subnets of the ECS tasks, with a route to the internet through a NAT gateway (ECR, Secrets Manager, SES, SNS and CloudWatch are reached over HTTPS)."
  type        = list(string)

  validation {
    condition     = length(var.private_subnet_ids) >= 2
    error_message = "Give private subnets in at least two availability zones."
  }
}

variable "database_subnet_ids" {
  description = "Subnets of RDS and ElastiCache (at least two availability zones); empty means private_subnet_ids."
  type        = list(string)
  default     = []
}

variable "allowed_cidrs" {
  description = "IPv4 CIDRs allowed to reach the load balancer on 443 (and on 80, which only redirects to 443)."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "trusted_proxy_cidrs" {
  description = "Sesame's trusted_proxies (whose X-Forwarded-For is believed). Null means the CIDRs of public_subnet_ids, where the ALB's nodes live."
  type        = list(string)
  default     = null
}

# ---------------------------------------------------------------------------------------------
# Public endpoint
# ---------------------------------------------------------------------------------------------

variable "domain_name" {
  description = "Public host name of the service (auth.example.com). The issuer is https://DOMAIN_NAME/, as Auth0's SDKs expect."
  type        = string
}

variable "certificate_arn" {
  description = "ARN of an ACM certificate for domain_name, in the same region, already issued (validated)."
  type        = string
}

variable "ssl_policy" {
  description = "TLS policy of the HTTPS listener."
  type        = string
  default     = "ELBSecurityPolicy-TLS13-1-2-2021-06"
}

variable "route53_zone_id" {
  description = "Optional public Route 53 zone: when set, the module creates the alias record of domain_name and the three DKIM CNAMEs of email_domain in it. Null: create them yourself from the outputs."
  type        = string
  default     = null
}

variable "waf_web_acl_arn" {
  description = "Optional WAFv2 web ACL (REGIONAL) to associate with the load balancer. Beware managed rules that block URLs in query strings: /authorize carries redirect_uri."
  type        = string
  default     = null
}

variable "alb_deletion_protection" {
  description = "Deletion protection of the load balancer."
  type        = bool
  default     = true
}

variable "alb_access_logs_bucket" {
  description = "Optional S3 bucket for ALB access logs. Off by default: access logs record whole request URLs, and a magic link's query string is a login secret (Sesame keeps query strings out of its own logs)."
  type        = string
  default     = null
}

variable "deregistration_delay" {
  description = "Seconds the ALB drains a stopping task before ECS signals it; at least the longest request (an SMS start waits for the first attempt: [sns] operation_timeout_ms, 12 s)."
  type        = number
  default     = 30
}

# ---------------------------------------------------------------------------------------------
# Service
# ---------------------------------------------------------------------------------------------

variable "task_cpu" {
  description = "Fargate task CPU units (the Sesame container plus the metrics sidecar)."
  type        = number
  default     = 512
}

variable "task_memory" {
  description = "Fargate task memory (MiB)."
  type        = number
  default     = 1024
}

variable "desired_count" {
  description = "Tasks at creation; autoscaling owns the count afterwards."
  type        = number
  default     = 2
}

variable "min_capacity" {
  description = "Autoscaling floor (tasks). Two or more keeps a task in each of two zones."
  type        = number
  default     = 2
}

variable "max_capacity" {
  description = "Autoscaling ceiling (tasks). Mind RDS max_connections: each task opens up to database pool_size (16) connections."
  type        = number
  default     = 10
}

variable "cpu_target_percent" {
  description = "Target average CPU utilisation of the service for target-tracking scaling."
  type        = number
  default     = 60
}

variable "requests_per_target" {
  description = "Target ALB requests per task per minute (ALBRequestCountPerTarget) for target-tracking scaling."
  type        = number
  default     = 3000
}

variable "shutdown_grace_secs" {
  description = "Sesame's shutdown_grace_secs: on SIGTERM in-flight requests get this long. The container's stopTimeout is this plus 20 s (the delivery worker settles what it holds after the grace), at most 120."
  type        = number
  default     = 10

  validation {
    condition     = var.shutdown_grace_secs >= 1 && var.shutdown_grace_secs <= 100
    error_message = "shutdown_grace_secs must be 1-100 (Fargate's stopTimeout is at most 120 s)."
  }
}

variable "sms_allowed_countries" {
  description = "Sesame's [limits] sms_allowed_countries (ISO 3166 codes): SMS to other countries is refused before anything is sent. Empty allows all; narrow it against SMS pumping."
  type        = list(string)
  default     = []
}

variable "extra_config_toml" {
  description = "TOML appended after the tables the module writes: start it with a table header ([tokens], [delivery], [[apis]], ...), since a key before any header would land in the module's last table. Do not repeat [redis], [ses], [sns], nor [limits] when sms_allowed_countries is set."
  type        = string
  default     = ""
}

variable "enable_metrics_sidecar" {
  description = "Run the CloudWatch agent next to Sesame in each task: it scrapes /metrics on 127.0.0.1:9100 and publishes the outbox gauges to CloudWatch (needed by the outbox alarm)."
  type        = bool
  default     = true
}

variable "cloudwatch_agent_image" {
  description = "CloudWatch agent image of the metrics sidecar (pin a version)."
  type        = string
  default     = "public.ecr.aws/cloudwatch-agent/cloudwatch-agent:1.300059.0b1207"
}

variable "metrics_namespace" {
  description = "CloudWatch namespace of the metrics the sidecar publishes."
  type        = string
  default     = "Sesame"
}

variable "log_retention_days" {
  description = "Retention of the CloudWatch log groups (days)."
  type        = number
  default     = 365
}

# ---------------------------------------------------------------------------------------------
# Postgres (RDS)
# ---------------------------------------------------------------------------------------------

variable "db_engine_version" {
  description = "RDS for PostgreSQL engine version: a major version (\"16\") takes RDS's default minor one."
  type        = string
  default     = "16"
}

variable "db_instance_class" {
  description = "RDS instance class."
  type        = string
  default     = "db.t4g.medium"
}

variable "db_allocated_storage" {
  description = "Initial storage (GiB)."
  type        = number
  default     = 20
}

variable "db_max_allocated_storage" {
  description = "Storage autoscaling ceiling (GiB)."
  type        = number
  default     = 100
}

variable "db_multi_az" {
  description = "Multi-AZ RDS (a synchronous standby in another zone, automatic failover)."
  type        = bool
  default     = true
}

variable "db_backup_retention_days" {
  description = "Automated backups (point-in-time recovery) kept this many days."
  type        = number
  default     = 14

  validation {
    condition     = var.db_backup_retention_days >= 1 && var.db_backup_retention_days <= 35
    error_message = "db_backup_retention_days must be 1-35."
  }
}

variable "db_deletion_protection" {
  description = "RDS deletion protection."
  type        = bool
  default     = true
}

variable "db_iam_authentication" {
  description = "Enable IAM database authentication on the instance (for operators' psql sessions; Sesame itself logs in with the password in its database_url secret)."
  type        = bool
  default     = true
}

variable "db_ca_file" {
  description = "Path, inside the image, of Amazon's RDS CA bundle: set it (an image that ships the bundle) to connect with sslmode=verify-full. Null: sslmode=require (encrypted, the certificate is not checked) since deploy/Dockerfile ships only the system roots, which do not hold RDS's CA."
  type        = string
  default     = null
}

# ---------------------------------------------------------------------------------------------
# Redis (ElastiCache)
# ---------------------------------------------------------------------------------------------

variable "redis_node_type" {
  description = "ElastiCache node type."
  type        = string
  default     = "cache.t4g.small"
}

variable "redis_engine_version" {
  description = "Redis OSS engine version."
  type        = string
  default     = "7.1"
}

variable "redis_cluster_mode" {
  description = "Redis cluster mode (shards): sets num_node_groups / replicas_per_node_group and Sesame's [redis] cluster = true. Off: one shard with replicas_per_node_group replicas."
  type        = bool
  default     = false
}

variable "redis_num_node_groups" {
  description = "Shards when redis_cluster_mode is on."
  type        = number
  default     = 2
}

variable "redis_replicas_per_node_group" {
  description = "Replicas per shard (at least 1: automatic failover and Multi-AZ need one)."
  type        = number
  default     = 1

  validation {
    condition     = var.redis_replicas_per_node_group >= 1 && var.redis_replicas_per_node_group <= 5
    error_message = "redis_replicas_per_node_group must be 1-5."
  }
}

# ---------------------------------------------------------------------------------------------
# Email (SES) and SMS (SNS)
# ---------------------------------------------------------------------------------------------

variable "email_domain" {
  description = "Domain verified in SES (with Easy DKIM) that mail is sent from, e.g. example.com."
  type        = string
}

variable "from_address" {
  description = "Sesame's [ses] from_address, an address at email_domain (no-reply@example.com)."
  type        = string
}

variable "from_name" {
  description = "Optional display name of the sender."
  type        = string
  default     = null
}

variable "sms_monthly_spend_limit" {
  description = "SNS account-wide monthly SMS spend limit (USD). New accounts are capped at 1 USD until AWS support raises it; a value above the account's cap fails."
  type        = number
  default     = 1
}

variable "sms_sender_id" {
  description = "Optional alphanumeric sender ID (1-11 letters and digits), where the destination country supports one."
  type        = string
  default     = null
}

variable "sms_origination_number" {
  description = "Optional origination number (E.164, +15555550100) registered in AWS End User Messaging."
  type        = string
  default     = null
}

variable "manage_sms_preferences" {
  description = "Manage the account's SNS SMS preferences (default type Transactional, monthly spend limit). They are one per account and region: turn this off if another stack owns them."
  type        = bool
  default     = true
}

# ---------------------------------------------------------------------------------------------
# Secrets, alarms
# ---------------------------------------------------------------------------------------------

variable "secret_recovery_window_days" {
  description = "Days a deleted secret can still be restored (0 deletes at once)."
  type        = number
  default     = 30
}

variable "alarm_actions" {
  description = "ARNs notified when an alarm fires or recovers (an SNS topic, say)."
  type        = list(string)
  default     = []
}

variable "alarm_5xx_percent" {
  description = "Alarm when 5xx answers (target and load balancer) exceed this share of requests over 5 minutes."
  type        = number
  default     = 1
}

variable "alarm_p99_latency_seconds" {
  description = "Alarm when the p99 TargetResponseTime exceeds this over 5 minutes (an SMS start waits for its first send)."
  type        = number
  default     = 1
}

variable "alarm_outbox_age_seconds" {
  description = "Alarm when sesame_outbox_oldest_pending_seconds exceeds this (codes live 180 s by default)."
  type        = number
  default     = 120
}

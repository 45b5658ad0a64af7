variable "region" {
  description = "AWS region (SES, SNS SMS and the ACM certificate must be available in it)."
  type        = string
  default     = "eu-west-1"
}

variable "name" {
  description = "Deployment name (prefix of every resource)."
  type        = string
  default     = "sesame"
}

variable "image" {
  description = "Sesame's image in ECR: ACCOUNT.dkr.ecr.REGION.amazonaws.com/sesame:TAG."
  type        = string
}

variable "domain_name" {
  description = "Public host name of the service, e.g. auth.example.com."
  type        = string
}

variable "certificate_arn" {
  description = "Issued ACM certificate for domain_name in var.region."
  type        = string
}

variable "route53_zone_id" {
  description = "Public Route 53 zone holding domain_name and email_domain (null: create the records by hand)."
  type        = string
  default     = null
}

variable "email_domain" {
  description = "Domain mail is sent from (SES identity), e.g. example.com."
  type        = string
}

variable "from_address" {
  description = "Sender address at email_domain."
  type        = string
}

variable "sms_monthly_spend_limit" {
  description = "SNS monthly SMS spend limit (USD) of the account."
  type        = number
  default     = 1
}

variable "sms_allowed_countries" {
  description = "ISO 3166 codes SMS may go to (empty: all)."
  type        = list(string)
  default     = []
}

variable "alarm_email" {
  description = "Optional address subscribed to the alarms' SNS topic (confirm the subscription mail)."
  type        = string
  default     = null
}

variable "availability_zones" {
  description = "The two availability zones of the VPC; null means REGIONa and REGIONb."
  type        = list(string)
  default     = null

  validation {
    condition     = var.availability_zones == null ? true : length(var.availability_zones) == 2
    error_message = "Give exactly two availability zones."
  }
}

variable "vpc_cidr" {
  description = "CIDR of the VPC this example creates."
  type        = string
  default     = "10.40.0.0/16"
}

variable "db_multi_az" {
  description = "Multi-AZ RDS."
  type        = bool
  default     = true
}

variable "redis_cluster_mode" {
  description = "ElastiCache cluster mode (shards)."
  type        = bool
  default     = false
}

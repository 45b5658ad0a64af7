# ElastiCache for Redis OSS: Sesame's shared rate limits and client-assertion replay guard.
# TLS in transit (required), AUTH token, encrypted at rest with the module's key, a replica per
# shard with automatic failover. Cluster mode (shards) by variable: Sesame's limiter keys share
# one hash tag, so they are cluster-safe ([redis] cluster = true is written to match).

resource "aws_elasticache_subnet_group" "this" {
  name       = var.name
  subnet_ids = local.database_subnet_ids
  tags       = local.tags
}

resource "aws_cloudwatch_log_group" "redis_slow" {
  name              = "/${var.name}/elasticache/slow-log"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.this.arn
  tags              = local.tags
}

resource "aws_elasticache_replication_group" "this" {
  replication_group_id = var.name
  description          = "Sesame rate limits (${var.name})"

  engine               = "redis"
  engine_version       = var.redis_engine_version
  node_type            = var.redis_node_type
  port                 = 6379
  parameter_group_name = var.redis_cluster_mode ? "default.redis7.cluster.on" : "default.redis7"

  cluster_mode            = var.redis_cluster_mode ? "enabled" : "disabled"
  num_node_groups         = var.redis_cluster_mode ? var.redis_num_node_groups : null
  replicas_per_node_group = var.redis_cluster_mode ? var.redis_replicas_per_node_group : null
  num_cache_clusters      = var.redis_cluster_mode ? null : var.redis_replicas_per_node_group + 1

  automatic_failover_enabled = true
  multi_az_enabled           = true

  subnet_group_name  = aws_elasticache_subnet_group.this.name
  security_group_ids = [aws_security_group.redis.id]

  at_rest_encryption_enabled = true
  kms_key_id                 = aws_kms_key.this.arn
  transit_encryption_enabled = true
  transit_encryption_mode    = "required"
  auth_token                 = random_password.redis.result
  # A new token is added next to the old one (ROTATE), so running tasks keep working until
  # they are redeployed with the new redis_url (docs/deploy-aws.md).
  auth_token_update_strategy = "ROTATE"

  # No snapshots: Redis holds only rate-limit counters and replay-guard entries that expire
  # within their windows; after a loss Sesame starts counting afresh.
  snapshot_retention_limit   = 0
  maintenance_window         = "sun:05:30-sun:06:30"
  auto_minor_version_upgrade = true
  apply_immediately          = false

  log_delivery_configuration {
    destination      = aws_cloudwatch_log_group.redis_slow.name
    destination_type = "cloudwatch-logs"
    log_format       = "json"
    log_type         = "slow-log"
  }

  tags = local.tags
}

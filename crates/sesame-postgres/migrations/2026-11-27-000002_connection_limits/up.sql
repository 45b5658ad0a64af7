-- A connection's own rate limits and SMS countries (sesame_domain::ConnectionLimits as JSON);
-- an empty object means "the service-wide values". Adding a column with a default keeps
-- running replicas working (expand first).
ALTER TABLE connections ADD COLUMN limits jsonb NOT NULL DEFAULT '{}';

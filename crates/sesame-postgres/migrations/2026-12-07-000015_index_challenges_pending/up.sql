-- The outbox of issue 13: the claim query reads only rows whose message is pending, oldest first.
-- A sent message leaves this index (its row stays while its code lives).
-- CONCURRENTLY, as above: DROP INDEX CONCURRENTLY challenges_pending after a failed build.
CREATE INDEX CONCURRENTLY IF NOT EXISTS challenges_pending ON challenges (message_created_at) WHERE delivery = 'pending';

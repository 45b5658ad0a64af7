-- A user's log (GET /api/v2/users/{id}/logs), and its deletion.
-- CONCURRENTLY: writes to the table go on while it is built (one statement per migration,
-- outside a transaction: see metadata.toml). A build that failed leaves an INVALID index:
-- DROP INDEX CONCURRENTLY audit_events_user, then run `sesame migrate` again.
CREATE INDEX CONCURRENTLY IF NOT EXISTS audit_events_user ON audit_events (user_id, at DESC) WHERE user_id IS NOT NULL;

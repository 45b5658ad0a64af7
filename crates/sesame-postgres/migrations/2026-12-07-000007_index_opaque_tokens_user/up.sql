-- Deleting a user deletes its access tokens.
-- CONCURRENTLY: writes to the table go on while it is built (one statement per migration,
-- outside a transaction: see metadata.toml). A build that failed leaves an INVALID index:
-- DROP INDEX CONCURRENTLY opaque_tokens_user, then run `sesame migrate` again.
CREATE INDEX CONCURRENTLY IF NOT EXISTS opaque_tokens_user ON opaque_tokens (user_id);

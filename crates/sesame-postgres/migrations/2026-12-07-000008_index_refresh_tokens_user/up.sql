-- Deleting a user deletes its refresh tokens and their families.
-- CONCURRENTLY: writes to the table go on while it is built (one statement per migration,
-- outside a transaction: see metadata.toml). A build that failed leaves an INVALID index:
-- DROP INDEX CONCURRENTLY refresh_tokens_user, then run `sesame migrate` again.
CREATE INDEX CONCURRENTLY IF NOT EXISTS refresh_tokens_user ON refresh_tokens (user_id);

-- Listing pages, oldest first.
-- CONCURRENTLY: writes to the table go on while it is built (one statement per migration,
-- outside a transaction: see metadata.toml). A build that failed leaves an INVALID index:
-- DROP INDEX CONCURRENTLY users_created, then run `sesame migrate` again.
CREATE INDEX CONCURRENTLY IF NOT EXISTS users_created ON users (created_at, user_id);

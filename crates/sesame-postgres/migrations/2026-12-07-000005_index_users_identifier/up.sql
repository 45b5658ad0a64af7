-- GET /api/v2/users-by-email and q=email:"…" look across connections.
-- CONCURRENTLY: writes to the table go on while it is built (one statement per migration,
-- outside a transaction: see metadata.toml). A build that failed leaves an INVALID index:
-- DROP INDEX CONCURRENTLY users_identifier, then run `sesame migrate` again.
CREATE INDEX CONCURRENTLY IF NOT EXISTS users_identifier ON users (identifier);

-- Deleting a user deletes its authorization codes.
-- CONCURRENTLY: writes to the table go on while it is built (one statement per migration,
-- outside a transaction: see metadata.toml). A build that failed leaves an INVALID index:
-- DROP INDEX CONCURRENTLY authorization_codes_user, then run `sesame migrate` again.
CREATE INDEX CONCURRENTLY IF NOT EXISTS authorization_codes_user ON authorization_codes (user_id);

-- Deleting a user deletes the messages not yet sent to its identifier.
-- CONCURRENTLY: writes to the table go on while it is built (one statement per migration,
-- outside a transaction: see metadata.toml). A build that failed leaves an INVALID index:
-- DROP INDEX CONCURRENTLY outbox_recipient, then run `sesame migrate` again.
CREATE INDEX CONCURRENTLY IF NOT EXISTS outbox_recipient ON outbox (recipient);

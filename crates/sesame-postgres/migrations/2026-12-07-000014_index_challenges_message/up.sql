-- Delivery settles and claims a message by its id (issue 13: the message lives on its challenge row).
-- Unique: ids are random (96 bits), and a unique index is what a plan made on an empty table picks.
-- CONCURRENTLY: writes to the table go on while it is built (one statement per migration,
-- outside a transaction: see metadata.toml). A build that failed leaves an INVALID index:
-- DROP INDEX CONCURRENTLY challenges_message, then run `sesame migrate` again.
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS challenges_message ON challenges (message_id);

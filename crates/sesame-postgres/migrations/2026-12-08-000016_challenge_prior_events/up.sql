-- A start that overwrites its key's challenge row keeps the row's earlier event on the row
-- (issue 13): `prior_events` is a jsonb array of those events (`at`, `kind`, `client_id`,
-- `connection`, `identifier`, `ip`, `detail`), appended to in the start's own write, so a start
-- reads and writes nothing else. The audit listing reads them from here; retention moves them
-- into audit_events (and so does deleting the row). NULL: none.
-- Nullable without a default: adding it rewrites nothing, and replicas of the previous release
-- (which move the earlier event to audit_events themselves) keep working.
ALTER TABLE challenges ADD COLUMN prior_events jsonb;

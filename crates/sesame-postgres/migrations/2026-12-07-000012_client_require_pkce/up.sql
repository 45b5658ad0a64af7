-- Whether a public client must send PKCE with response_type=code (issue 14's migration setting).
-- On by default, as before this column existed: a default keeps running replicas working.
ALTER TABLE clients ADD COLUMN require_pkce boolean NOT NULL DEFAULT true;

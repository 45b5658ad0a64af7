-- The scopes each client may be granted per API ({"https://api.example.com/": ["read:x"]}), and
-- whether its auth0-forwarded-for header is believed. Columns with defaults keep running
-- replicas working (expand first): an older replica simply grants no API scopes.
ALTER TABLE clients
    ADD COLUMN api_scopes jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN trust_forwarded_for boolean NOT NULL DEFAULT false;

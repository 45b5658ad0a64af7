ALTER TABLE clients DROP COLUMN api_scopes, DROP COLUMN trust_forwarded_for;

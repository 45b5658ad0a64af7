-- The Management API (issue 15): what an operator may set on a user. Columns with defaults keep
-- running replicas working (expand first): an older replica reads and writes logins as before,
-- and never blocks anyone. The indexes come in the migrations after this one, each built
-- CONCURRENTLY (outside a transaction), so that logins never wait for a build.
ALTER TABLE users
    ADD COLUMN blocked       boolean NOT NULL DEFAULT false,
    ADD COLUMN name          text,
    ADD COLUMN nickname      text,
    ADD COLUMN picture       text,
    ADD COLUMN user_metadata jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN app_metadata  jsonb NOT NULL DEFAULT '{}';
ALTER TABLE clients ADD COLUMN allowed_logout_urls text[] NOT NULL DEFAULT '{}';

-- The Management API (issue 15): what an operator may set on a user, and the indexes that let a
-- user be found by address and deleted with everything held about them. Columns with defaults
-- keep running replicas working (expand first): an older replica reads and writes logins as
-- before, and never blocks anyone.
ALTER TABLE users
    ADD COLUMN blocked       boolean NOT NULL DEFAULT false,
    ADD COLUMN name          text,
    ADD COLUMN nickname      text,
    ADD COLUMN picture       text,
    ADD COLUMN user_metadata jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN app_metadata  jsonb NOT NULL DEFAULT '{}';
-- GET /api/v2/users-by-email and q=email:"…" look across connections.
CREATE INDEX users_identifier ON users (identifier);
-- Listing pages, oldest first.
CREATE INDEX users_created ON users (created_at, user_id);
-- Deleting a user deletes its tokens and events.
CREATE INDEX opaque_tokens_user ON opaque_tokens (user_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);
CREATE INDEX authorization_codes_user ON authorization_codes (user_id);
CREATE INDEX audit_events_user ON audit_events (user_id, at DESC) WHERE user_id IS NOT NULL;
CREATE INDEX outbox_recipient ON outbox (recipient);

ALTER TABLE clients ADD COLUMN allowed_logout_urls text[] NOT NULL DEFAULT '{}';

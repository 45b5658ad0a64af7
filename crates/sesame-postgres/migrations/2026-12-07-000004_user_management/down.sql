ALTER TABLE clients DROP COLUMN allowed_logout_urls;
DROP INDEX outbox_recipient;
DROP INDEX audit_events_user;
DROP INDEX authorization_codes_user;
DROP INDEX refresh_tokens_user;
DROP INDEX opaque_tokens_user;
DROP INDEX users_created;
DROP INDEX users_identifier;
ALTER TABLE users
    DROP COLUMN blocked, DROP COLUMN name, DROP COLUMN nickname, DROP COLUMN picture,
    DROP COLUMN user_metadata, DROP COLUMN app_metadata;

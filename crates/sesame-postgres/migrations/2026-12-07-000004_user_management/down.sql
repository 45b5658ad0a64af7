ALTER TABLE clients DROP COLUMN allowed_logout_urls;
ALTER TABLE users
    DROP COLUMN blocked, DROP COLUMN name, DROP COLUMN nickname, DROP COLUMN picture,
    DROP COLUMN user_metadata, DROP COLUMN app_metadata;

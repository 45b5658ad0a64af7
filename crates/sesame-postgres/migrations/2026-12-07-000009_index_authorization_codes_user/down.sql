DROP INDEX CONCURRENTLY IF EXISTS authorization_codes_user;

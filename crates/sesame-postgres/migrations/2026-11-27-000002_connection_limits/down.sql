ALTER TABLE connections DROP COLUMN limits;

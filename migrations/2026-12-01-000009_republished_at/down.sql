ALTER TABLE tasks DROP COLUMN republished_at;

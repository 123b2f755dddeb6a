ALTER TABLE tasks DROP COLUMN queued_at;

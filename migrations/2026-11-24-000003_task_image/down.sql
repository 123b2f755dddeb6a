ALTER TABLE tasks DROP COLUMN image_digest;
ALTER TABLE tasks DROP COLUMN image_reference;

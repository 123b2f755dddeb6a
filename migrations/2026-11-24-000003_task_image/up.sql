-- The image a task built and pushed: the reference of its first tag and
-- the manifest digest the registry answered.
ALTER TABLE tasks ADD COLUMN image_reference TEXT;
ALTER TABLE tasks ADD COLUMN image_digest TEXT;

ALTER TABLE rollbacks DROP COLUMN via_deployment_id;
ALTER TABLE tasks DROP COLUMN deployment_id;

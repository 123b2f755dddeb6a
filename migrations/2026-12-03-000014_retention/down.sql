DROP TABLE image_deletions;
DROP INDEX deployments_image_digest;
DROP INDEX tasks_image_digest;
DROP INDEX rollbacks_to;
DROP INDEX rollbacks_from;
DROP INDEX rollbacks_via;
DROP INDEX rollbacks_deployment;
DROP INDEX outbox_task;
DROP INDEX events_deployment;
DROP INDEX deployments_previous;
DROP INDEX deployments_task;
DROP INDEX tasks_deployment;
DROP INDEX tasks_retry_of;
ALTER TABLE rollbacks DROP CONSTRAINT rollbacks_to_deployment_id_fkey,
    ADD CONSTRAINT rollbacks_to_deployment_id_fkey FOREIGN KEY (to_deployment_id)
        REFERENCES deployments (id);
ALTER TABLE rollbacks DROP CONSTRAINT rollbacks_from_deployment_id_fkey,
    ADD CONSTRAINT rollbacks_from_deployment_id_fkey FOREIGN KEY (from_deployment_id)
        REFERENCES deployments (id);
ALTER TABLE deployments DROP CONSTRAINT deployments_previous_deployment_id_fkey,
    ADD CONSTRAINT deployments_previous_deployment_id_fkey FOREIGN KEY (previous_deployment_id)
        REFERENCES deployments (id);
ALTER TABLE tasks DROP CONSTRAINT tasks_retry_of_fkey,
    ADD CONSTRAINT tasks_retry_of_fkey FOREIGN KEY (retry_of) REFERENCES tasks (id);
ALTER TABLE workflows
    DROP COLUMN last_pruned_images,
    DROP COLUMN last_pruned_log_bytes,
    DROP COLUMN last_pruned_tasks,
    DROP COLUMN last_pruned_at;

-- Retention (workflow.md, "Caches and retention"): the pruner deletes old
-- finished tasks with what hangs off them, in small batches.

-- The workflow's last pruning that removed anything: when, and how much.
ALTER TABLE workflows
    ADD COLUMN last_pruned_at        TIMESTAMPTZ,
    ADD COLUMN last_pruned_tasks     BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN last_pruned_log_bytes BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN last_pruned_images    BIGINT NOT NULL DEFAULT 0;

-- A retained row may point at a pruned one for history only: the link is
-- dropped with it rather than keeping the older row forever.
ALTER TABLE tasks DROP CONSTRAINT tasks_retry_of_fkey,
    ADD CONSTRAINT tasks_retry_of_fkey FOREIGN KEY (retry_of)
        REFERENCES tasks (id) ON DELETE SET NULL;
ALTER TABLE deployments DROP CONSTRAINT deployments_previous_deployment_id_fkey,
    ADD CONSTRAINT deployments_previous_deployment_id_fkey FOREIGN KEY (previous_deployment_id)
        REFERENCES deployments (id) ON DELETE SET NULL;
ALTER TABLE rollbacks DROP CONSTRAINT rollbacks_from_deployment_id_fkey,
    ADD CONSTRAINT rollbacks_from_deployment_id_fkey FOREIGN KEY (from_deployment_id)
        REFERENCES deployments (id) ON DELETE SET NULL;
ALTER TABLE rollbacks DROP CONSTRAINT rollbacks_to_deployment_id_fkey,
    ADD CONSTRAINT rollbacks_to_deployment_id_fkey FOREIGN KEY (to_deployment_id)
        REFERENCES deployments (id) ON DELETE SET NULL;

-- Deleting a task or a deployment checks every row that may point at it:
-- without these, each deleted row would scan the referring table.
CREATE INDEX tasks_retry_of ON tasks (retry_of) WHERE retry_of IS NOT NULL;
CREATE INDEX tasks_deployment ON tasks (deployment_id) WHERE deployment_id IS NOT NULL;
CREATE INDEX deployments_task ON deployments (task_id);
CREATE INDEX deployments_previous ON deployments (previous_deployment_id)
    WHERE previous_deployment_id IS NOT NULL;
CREATE INDEX events_deployment ON events (deployment_id) WHERE deployment_id IS NOT NULL;
CREATE INDEX outbox_task ON outbox (task_id);
CREATE INDEX rollbacks_deployment ON rollbacks (deployment_id);
CREATE INDEX rollbacks_via ON rollbacks (via_deployment_id) WHERE via_deployment_id IS NOT NULL;
CREATE INDEX rollbacks_from ON rollbacks (from_deployment_id) WHERE from_deployment_id IS NOT NULL;
CREATE INDEX rollbacks_to ON rollbacks (to_deployment_id) WHERE to_deployment_id IS NOT NULL;
-- Images still in use are looked up by digest before one is deleted.
CREATE INDEX tasks_image_digest ON tasks (image_digest) WHERE image_digest IS NOT NULL;
CREATE INDEX deployments_image_digest ON deployments ((split_part(image, '@', 2)));

-- Registry manifests of pruned tasks' images to delete (with
-- SLIPWAY_REGISTRY_DELETE=true). The orchestrator talks to no registry: a
-- runner claims a row by moving next_attempt_at past the time a deletion
-- needs (a runner that died lets it come due again), deletes the manifest
-- and reports; a deleted (or already gone) one leaves the table, one that
-- kept failing stays as 'failed' for an operator to see.
CREATE TABLE image_deletions (
    id              BIGSERIAL PRIMARY KEY,
    -- Whose REGISTRY_USERNAME and REGISTRY_PASSWORD secrets log in.
    workflow_id     BIGINT NOT NULL REFERENCES workflows (id),
    -- registry/name, without tag or digest.
    repository      TEXT NOT NULL,
    digest          TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'failed')),
    attempts        INT NOT NULL DEFAULT 0,
    last_error      TEXT,
    claimed_by      TEXT,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (repository, digest)
);
CREATE INDEX image_deletions_due ON image_deletions (next_attempt_at) WHERE status = 'pending';

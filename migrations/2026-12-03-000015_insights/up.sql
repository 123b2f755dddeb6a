-- Insights (api.md): the commit's time for lead time, the health of each
-- environment's current deployment as its host's runners probe it, and
-- the indexes that keep the overview and the figures of a period fast.

-- When the commit was made: from the push or merge request event, else
-- from the clone. Lead time counts from it (the task's creation when null).
CREATE TABLE task_commits (
    task_id      BIGINT PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
    committed_at TIMESTAMPTZ NOT NULL
);

-- The latest probe of the environment's current deployment (runtime.md,
-- SLIPWAY_HEALTH_INTERVAL). `health` is up | down | unknown for
-- `health_deployment_id`; any other current deployment is unknown.
ALTER TABLE environments
    ADD COLUMN health               TEXT NOT NULL DEFAULT 'unknown'
        CHECK (health IN ('up', 'down', 'unknown')),
    ADD COLUMN health_deployment_id BIGINT REFERENCES deployments (id) ON DELETE SET NULL,
    -- Failed probes in a row; 3 make it down.
    ADD COLUMN health_failures      INT NOT NULL DEFAULT 0,
    ADD COLUMN health_checked_at    TIMESTAMPTZ,
    ADD COLUMN health_error         TEXT,
    -- When a runner may take its next probe (claimed by moving it ahead).
    ADD COLUMN health_next_at       TIMESTAMPTZ NOT NULL DEFAULT now();

-- A period's figures: tasks and deploys of a workflow by time.
CREATE INDEX tasks_workflow_created ON tasks (workflow_id, created_at);
CREATE INDEX deployments_workflow_created ON deployments (workflow_id, created_at);
CREATE INDEX rollbacks_workflow_created ON rollbacks (workflow_id, created_at);
-- The overview's approvals: few rows wait at any time.
CREATE INDEX deployments_awaiting ON deployments (workflow_id, environment, id DESC)
    WHERE status = 'awaiting_approval';

-- Pull requests and commit statuses (forges.md).

-- A pull request task: {"number", "title", "url", "source_branch",
-- "target_branch", "fork"} (its branch column holds the source branch).
ALTER TABLE tasks ADD COLUMN pull_request JSONB;
-- Where the task's commit statuses go and whose credentials clone it:
-- {"forge": "github"|"gitlab", "repo": owner/name or the project id,
-- "web_url": GitLab's project page, "installation_id": GitHub's App
-- installation}. NULL: no statuses.
ALTER TABLE tasks ADD COLUMN forge JSONB;
CREATE INDEX tasks_open_by_pull_request ON tasks (workflow_id, ((pull_request->>'number')::bigint))
    WHERE status IN ('pending', 'running') AND pull_request IS NOT NULL;
CREATE INDEX tasks_open_by_branch ON tasks (workflow_id, branch)
    WHERE status IN ('pending', 'running');

-- The installation of the workflow's last GitHub webhook, for manual runs.
ALTER TABLE workflows ADD COLUMN installation_id BIGINT;

-- One commit status per event and context. seq is the event's: per
-- commit and context, statuses are sent in that order, and one older than
-- a status already delivered is superseded, never sent. A notifier claims
-- a due status by moving next_attempt_at past the time an attempt needs.
CREATE TABLE commit_statuses (
    id              BIGSERIAL PRIMARY KEY,
    event_id        TEXT NOT NULL REFERENCES events (id),
    task_id         BIGINT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    seq             BIGINT NOT NULL,
    context         TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'running', 'success', 'failure', 'error')),
    description     TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'delivered', 'failed', 'superseded')),
    attempts        INT NOT NULL DEFAULT 0,
    last_error      TEXT,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    delivered_at    TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (event_id, context)
);
CREATE INDEX commit_statuses_task ON commit_statuses (task_id, seq);
-- Claims compare a status with the others of its commit.
CREATE INDEX tasks_commit ON tasks (commit_sha) WHERE forge IS NOT NULL;
CREATE INDEX commit_statuses_due ON commit_statuses (next_attempt_at) WHERE status = 'pending';

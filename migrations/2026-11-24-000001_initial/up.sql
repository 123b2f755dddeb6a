-- Workflows, their versions and secrets; webhook deliveries; tasks, steps,
-- logs; and the outbox of tasks still to be published to the queue.

CREATE TABLE workflows (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT NOT NULL,
    repo        TEXT NOT NULL,
    version     INTEGER NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Deleting keeps the history: the row stays, its name is free again.
    deleted_at  TIMESTAMPTZ
);
CREATE UNIQUE INDEX workflows_live_name ON workflows (name) WHERE deleted_at IS NULL;

CREATE TABLE workflow_versions (
    workflow_id BIGINT NOT NULL REFERENCES workflows (id),
    version     INTEGER NOT NULL,
    definition  TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (workflow_id, version)
);

CREATE TABLE secrets (
    workflow_id BIGINT NOT NULL REFERENCES workflows (id),
    name        TEXT NOT NULL,
    nonce       BYTEA NOT NULL,
    ciphertext  BYTEA NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (workflow_id, name)
);

CREATE TABLE webhook_deliveries (
    id          BIGSERIAL PRIMARY KEY,
    provider    TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    event       TEXT NOT NULL,
    body_sha256 TEXT NOT NULL,
    task_ids    BIGINT[] NOT NULL DEFAULT '{}',
    ignored     TEXT,
    received_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (provider, delivery_id)
);

CREATE TABLE tasks (
    id               BIGSERIAL PRIMARY KEY,
    workflow_id      BIGINT NOT NULL REFERENCES workflows (id),
    workflow_version INTEGER NOT NULL,
    status           TEXT NOT NULL
        CHECK (status IN ('pending', 'running', 'success', 'failed', 'cancelled')),
    trigger          TEXT NOT NULL,
    attempt          INTEGER NOT NULL DEFAULT 1,
    retry_of         BIGINT REFERENCES tasks (id),
    branch           TEXT,
    tag              TEXT,
    commit_sha       TEXT,
    message          TEXT,
    author           TEXT,
    delivery_id      TEXT,
    error            TEXT,
    -- How often the task went back to the queue after losing its runner.
    requeues         INTEGER NOT NULL DEFAULT 0,
    runner_id        TEXT,
    lease_token      TEXT,
    lease_expires_at TIMESTAMPTZ,
    cancel_requested BOOLEAN NOT NULL DEFAULT false,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at       TIMESTAMPTZ,
    finished_at      TIMESTAMPTZ,
    FOREIGN KEY (workflow_id, workflow_version) REFERENCES workflow_versions (workflow_id, version)
);
CREATE INDEX tasks_workflow ON tasks (workflow_id, id DESC);
CREATE INDEX tasks_unfinished ON tasks (status) WHERE status IN ('pending', 'running');

CREATE TABLE steps (
    task_id     BIGINT NOT NULL REFERENCES tasks (id),
    position    INTEGER NOT NULL,
    name        TEXT NOT NULL,
    status      TEXT NOT NULL
        CHECK (status IN ('pending', 'running', 'success', 'failed', 'skipped', 'cancelled')),
    exit_code   INTEGER,
    error       TEXT,
    started_at  TIMESTAMPTZ,
    finished_at TIMESTAMPTZ,
    PRIMARY KEY (task_id, position)
);

CREATE TABLE log_chunks (
    id         BIGSERIAL PRIMARY KEY,
    task_id    BIGINT NOT NULL REFERENCES tasks (id),
    position   INTEGER NOT NULL,
    data       BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX log_chunks_task ON log_chunks (task_id, id);

-- Written in the transaction that creates or re-queues a task; deleted once
-- the broker confirmed the message. A task created while the broker is down
-- waits here.
CREATE TABLE outbox (
    id         BIGSERIAL PRIMARY KEY,
    task_id    BIGINT NOT NULL REFERENCES tasks (id),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

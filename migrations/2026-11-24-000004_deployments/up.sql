-- Deploys: one row per attempt to put an image on an environment, the
-- rollbacks that undid failed ones, each environment's current and previous
-- healthy deployment, and the events that tell people about them.

CREATE TABLE deployments (
    id                     BIGSERIAL PRIMARY KEY,
    workflow_id            BIGINT NOT NULL REFERENCES workflows (id),
    task_id                BIGINT REFERENCES tasks (id),
    environment            TEXT NOT NULL,
    -- registry/name@sha256:... : deploys and rollbacks use the digest, never a moving tag.
    image                  TEXT NOT NULL,
    status                 TEXT NOT NULL CHECK (status IN (
        'pending', 'awaiting_approval', 'deploying', 'verifying', 'succeeded',
        'failed', 'rolled_back', 'timed_out', 'skipped')),
    -- auto | approval | manual | rollback | workflow_run
    trigger                TEXT NOT NULL,
    previous_deployment_id BIGINT REFERENCES deployments (id),
    error                  TEXT,
    created_at             TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at             TIMESTAMPTZ,
    finished_at            TIMESTAMPTZ
);
CREATE INDEX deployments_environment ON deployments (workflow_id, environment, id DESC);

CREATE TABLE rollbacks (
    id                 BIGSERIAL PRIMARY KEY,
    workflow_id        BIGINT NOT NULL REFERENCES workflows (id),
    environment        TEXT NOT NULL,
    -- The deployment that failed (null for a manual rollback).
    deployment_id      BIGINT REFERENCES deployments (id),
    from_deployment_id BIGINT REFERENCES deployments (id),
    to_deployment_id   BIGINT REFERENCES deployments (id),
    reason             TEXT NOT NULL CHECK (reason IN ('deploy_failed', 'health_check_failed', 'manual')),
    status             TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    error              TEXT,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at        TIMESTAMPTZ
);
CREATE INDEX rollbacks_environment ON rollbacks (workflow_id, environment, id DESC);

CREATE TABLE environments (
    workflow_id            BIGINT NOT NULL REFERENCES workflows (id),
    name                   TEXT NOT NULL,
    current_deployment_id  BIGINT REFERENCES deployments (id),
    previous_deployment_id BIGINT REFERENCES deployments (id),
    updated_at             TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (workflow_id, name)
);

-- alerts.md events, written in the transaction of the change they report;
-- the notifier takes them from here (at least once, by id).
CREATE TABLE events (
    id            TEXT PRIMARY KEY,
    type          TEXT NOT NULL,
    workflow_id   BIGINT NOT NULL REFERENCES workflows (id),
    task_id       BIGINT REFERENCES tasks (id),
    deployment_id BIGINT REFERENCES deployments (id),
    environment   TEXT,
    summary       TEXT NOT NULL,
    error         TEXT,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    delivered_at  TIMESTAMPTZ
);
CREATE INDEX events_undelivered ON events (created_at) WHERE delivered_at IS NULL;

-- Events travel to the notifier through the broker: published_at is set
-- once the broker confirmed one. What the notifier needs to decide on an
-- event is fixed when it is written: the branch (repeats are counted per
-- branch), a rollback's reason and outcome, and whether a success is a
-- recovery. seq orders events written in one transaction.
ALTER TABLE events RENAME COLUMN delivered_at TO published_at;
DROP INDEX events_undelivered;
ALTER TABLE events ADD COLUMN seq BIGSERIAL;
ALTER TABLE events ADD COLUMN branch TEXT;
ALTER TABLE events ADD COLUMN reason TEXT;
ALTER TABLE events ADD COLUMN outcome TEXT;
ALTER TABLE events ADD COLUMN recovery BOOLEAN NOT NULL DEFAULT false;
CREATE INDEX events_unpublished ON events (seq) WHERE published_at IS NULL;
CREATE INDEX events_task ON events (task_id, type);

-- An alert: an event that matched notify rules. throttled: a repeat within
-- SLIPWAY_NOTIFY_THROTTLE, recorded but not sent. One per event, so an
-- event the notifier receives twice is sent once.
CREATE TABLE alerts (
    id           BIGSERIAL PRIMARY KEY,
    event_id     TEXT NOT NULL UNIQUE REFERENCES events (id),
    throttle_key TEXT NOT NULL,
    throttled    BOOLEAN NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX alerts_sent ON alerts (throttle_key, created_at) WHERE NOT throttled;

-- One channel of an alert. A notifier claims a due delivery by moving
-- next_attempt_at past the time it needs for an attempt, so two notifiers
-- never send one delivery at once and one that died is tried again.
CREATE TABLE deliveries (
    id              BIGSERIAL PRIMARY KEY,
    alert_id        BIGINT NOT NULL REFERENCES alerts (id),
    -- Position of the rule in the workflow's notify list; -1: the server default.
    rule            INT NOT NULL,
    channel         TEXT NOT NULL CHECK (channel IN ('slack', 'email', 'dingtalk', 'webhook')),
    -- Where it goes, for people: never a secret.
    target          TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        INT NOT NULL DEFAULT 0,
    last_error      TEXT,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    delivered_at    TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (alert_id, rule, channel)
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';

-- task_stuck is raised once per wait in pending.
ALTER TABLE tasks ADD COLUMN stuck_alerted_at TIMESTAMPTZ;

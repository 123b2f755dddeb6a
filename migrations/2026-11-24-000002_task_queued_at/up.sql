-- When a task last entered the queue (created or re-queued): the watchdog
-- publishes a task again when it has waited long with no outbox entry, in
-- case its message was lost outside Slipway (a purged queue, a broker that
-- lost its data).
ALTER TABLE tasks ADD COLUMN queued_at TIMESTAMPTZ NOT NULL DEFAULT now();

-- When the watchdog last published a long-pending task again. Kept apart
-- from queued_at, which measures the wait (queue wait time, task_stuck):
-- publishing again does not start a new wait.
ALTER TABLE tasks ADD COLUMN republished_at timestamptz;

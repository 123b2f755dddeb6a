-- The runner labels a task needs (its workflow's `runs_on`), sorted and
-- joined by '+'; '' for none. The task queue it is published to is named
-- after it.
ALTER TABLE tasks ADD COLUMN runs_on text NOT NULL DEFAULT '';

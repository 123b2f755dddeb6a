-- The W3C traceparent of the call that created a task, so that work done
-- later (publishing, running, alerts) joins the task's trace. NULL when
-- the orchestrator did not export spans at the time.
ALTER TABLE tasks ADD COLUMN trace_context TEXT;

DROP TABLE outbox;
DROP TABLE log_chunks;
DROP TABLE steps;
DROP TABLE tasks;
DROP TABLE webhook_deliveries;
DROP TABLE secrets;
DROP TABLE workflow_versions;
DROP TABLE workflows;

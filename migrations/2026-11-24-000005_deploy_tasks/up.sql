-- Approvals, re-deploys and manual rollbacks run as deploy-only tasks:
-- the task names the deployment it carries out. A manual rollback names
-- the deployment that carries it out.
ALTER TABLE tasks ADD COLUMN deployment_id BIGINT REFERENCES deployments (id);
ALTER TABLE rollbacks ADD COLUMN via_deployment_id BIGINT REFERENCES deployments (id);

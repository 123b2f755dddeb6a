-- Routed environments (edge.md): the host each deployment was made on, when
-- the edge proxy sent it the traffic and when its container was retired, and
-- which deployment of each environment the proxy serves now.
ALTER TABLE deployments
    ADD COLUMN host TEXT,
    ADD COLUMN switched_at TIMESTAMPTZ,
    ADD COLUMN retired_at TIMESTAMPTZ;

ALTER TABLE environments
    ADD COLUMN serving_deployment_id BIGINT REFERENCES deployments (id);

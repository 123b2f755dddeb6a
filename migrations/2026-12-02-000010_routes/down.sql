ALTER TABLE environments DROP COLUMN serving_deployment_id;
ALTER TABLE deployments
    DROP COLUMN retired_at,
    DROP COLUMN switched_at,
    DROP COLUMN host;

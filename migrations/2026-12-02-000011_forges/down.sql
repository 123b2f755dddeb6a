DROP INDEX tasks_commit;
DROP TABLE commit_statuses;
ALTER TABLE workflows DROP COLUMN installation_id;
DROP INDEX tasks_open_by_branch;
DROP INDEX tasks_open_by_pull_request;
ALTER TABLE tasks DROP COLUMN forge;
ALTER TABLE tasks DROP COLUMN pull_request;

DROP TABLE events;
DROP TABLE environments;
DROP TABLE rollbacks;
DROP TABLE deployments;

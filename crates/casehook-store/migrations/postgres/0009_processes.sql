-- The serving processes that share this database, each refreshing its row every few seconds:
-- limits configured per inbound hook, endpoint or connection are split between the live
-- processes of the role that enforces them, so that together they hold the configured rate.
CREATE TABLE processes (
    id              UUID PRIMARY KEY,
    serves_api      BOOLEAN NOT NULL,
    runs_workers    BOOLEAN NOT NULL,
    description     TEXT NOT NULL,
    started_at      BIGINT NOT NULL,
    seen_at         BIGINT NOT NULL
);

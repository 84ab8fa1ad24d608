-- The serving processes that share this database, each refreshing its row every few seconds:
-- limits configured per inbound hook, endpoint or connection are split between the live
-- processes of the role that enforces them, so that together they hold the configured rate.
CREATE TABLE processes (
    id              BLOB PRIMARY KEY,
    serves_api      INTEGER NOT NULL,
    runs_workers    INTEGER NOT NULL,
    description     TEXT NOT NULL,
    started_at      INTEGER NOT NULL,
    seen_at         INTEGER NOT NULL
);

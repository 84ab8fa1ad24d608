-- Actions (SQLite): API calls (a request, an operation or a sequence) run when events happen.

CREATE TABLE actions (
    id                  BLOB PRIMARY KEY,
    workspace_id        BLOB NOT NULL REFERENCES workspaces(id),
    name                TEXT NOT NULL,
    -- Subscriptions, condition and the call, as the API accepts them (checked by the server).
    config              TEXT NOT NULL,
    enabled             INTEGER NOT NULL,
    version             INTEGER NOT NULL,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    deleted_at          INTEGER
);
CREATE UNIQUE INDEX actions_name ON actions (workspace_id, name) WHERE deleted_at IS NULL;

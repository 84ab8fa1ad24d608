-- Actions (PostgreSQL): API calls (a request, an operation or a sequence) run when events happen.

CREATE TABLE actions (
    id                  UUID PRIMARY KEY,
    workspace_id        UUID NOT NULL REFERENCES workspaces(id),
    name                TEXT NOT NULL,
    -- Subscriptions, condition and the call, as the API accepts them (checked by the server).
    config              JSONB NOT NULL,
    enabled             BOOLEAN NOT NULL,
    version             BIGINT NOT NULL,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    deleted_at          BIGINT
);
CREATE UNIQUE INDEX actions_name ON actions (workspace_id, name) WHERE deleted_at IS NULL;

-- API connections (PostgreSQL): workspace secrets, connections and their operations, the state
-- and call log of API-call fields, their response cache and schedules, and the check that
-- the master key in use is the one secrets were sealed with.

CREATE TABLE secrets (
    id                  UUID PRIMARY KEY,
    workspace_id        UUID NOT NULL REFERENCES workspaces(id),
    name                TEXT NOT NULL,
    description         TEXT,
    -- The value, sealed (context `secret:<id>`); never returned by the API.
    value               BYTEA NOT NULL,
    version             BIGINT NOT NULL,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);
CREATE UNIQUE INDEX secrets_name ON secrets (workspace_id, name);

CREATE TABLE connections (
    id                  UUID PRIMARY KEY,
    workspace_id        UUID NOT NULL REFERENCES workspaces(id),
    name                TEXT NOT NULL,
    -- Base URL, headers, limits, TLS, auth (without its secrets) and operations.
    config              JSONB NOT NULL,
    -- The auth method's secrets, sealed JSON (context `connection:<id>:credentials`).
    credentials         BYTEA,
    version             BIGINT NOT NULL,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    deleted_at          BIGINT
);
CREATE UNIQUE INDEX connections_name ON connections (workspace_id, name) WHERE deleted_at IS NULL;

-- The metadata of each API-call field of each case: the last run's outcome.
CREATE TABLE api_call_states (
    workspace_id        UUID NOT NULL,
    case_id             UUID NOT NULL,
    field_key           TEXT NOT NULL,
    -- ok | failed | running | manual
    status              TEXT NOT NULL,
    fetched_at          BIGINT,
    error               TEXT,
    attempts            BIGINT NOT NULL,
    duration_ms         BIGINT,
    cached              BOOLEAN NOT NULL,
    -- Who overwrote the value by hand, and more.
    detail              JSONB,
    updated_at          BIGINT NOT NULL,
    PRIMARY KEY (case_id, field_key)
);

-- Every HTTP call an API-call field, an operation or a dry run made (secrets redacted).
CREATE TABLE api_call_log (
    id                  UUID PRIMARY KEY,
    workspace_id        UUID NOT NULL,
    case_id             UUID,
    field_key           TEXT,
    connection_id       UUID,
    operation           TEXT,
    dry_run             BOOLEAN NOT NULL,
    started_at          BIGINT NOT NULL,
    duration_us         BIGINT NOT NULL,
    request             JSONB NOT NULL,
    status              BIGINT,
    response            JSONB,
    error_kind          TEXT,
    error               TEXT,
    -- ok | failed | retry
    verdict             TEXT NOT NULL
);
CREATE INDEX api_call_log_workspace ON api_call_log (workspace_id, id);
CREATE INDEX api_call_log_case ON api_call_log (case_id, id);
CREATE INDEX api_call_log_started ON api_call_log (started_at);

-- Responses kept for `cache_duration`, by a hash of the rendered request.
CREATE TABLE api_call_cache (
    cache_key           TEXT PRIMARY KEY,
    workspace_id        UUID NOT NULL,
    status              BIGINT NOT NULL,
    body                BYTEA NOT NULL,
    stored_at           BIGINT NOT NULL,
    expires_at          BIGINT NOT NULL
);
CREATE INDEX api_call_cache_expiry ON api_call_cache (expires_at);

-- Scheduled API-call fields: when each runs next over its form's cases.
CREATE TABLE api_call_schedules (
    form_id             UUID NOT NULL,
    field_key           TEXT NOT NULL,
    workspace_id        UUID NOT NULL,
    schedule            TEXT NOT NULL,
    next_run_at         BIGINT NOT NULL,
    PRIMARY KEY (form_id, field_key)
);
CREATE INDEX api_call_schedules_due ON api_call_schedules (next_run_at);

-- A value sealed under the master key, so a server started with another key says so at once.
CREATE TABLE master_key_check (
    id                  SMALLINT PRIMARY KEY CHECK (id = 1),
    sealed              BYTEA NOT NULL,
    fingerprint         TEXT NOT NULL,
    updated_at          BIGINT NOT NULL
);

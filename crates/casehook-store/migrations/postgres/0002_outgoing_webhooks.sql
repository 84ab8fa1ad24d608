-- Outgoing webhooks (PostgreSQL): endpoints, the dispatch cursor over the event feed,
-- deliveries (one per event and endpoint, or per replay / test) and their attempts.

CREATE TABLE endpoints (
    id                  UUID PRIMARY KEY,
    workspace_id        UUID NOT NULL REFERENCES workspaces(id),
    name                TEXT NOT NULL,
    -- The whole configuration as the API accepts it (URL, method, subscriptions, condition,
    -- content, retry policy…), checked by the server before it gets here.
    config              JSONB NOT NULL,
    -- Signing secrets, sealed (encrypted) by the caller; the previous one keeps signing
    -- until `previous_secret_until` during a rotation.
    secret              BYTEA NOT NULL,
    previous_secret     BYTEA,
    previous_secret_until BIGINT,
    -- Credentials for the receiver (basic, bearer, API key), sealed JSON.
    auth                BYTEA,
    enabled             BOOLEAN NOT NULL,
    disabled_reason     TEXT,
    disabled_at         BIGINT,
    -- Health: when the last success / failure happened, since when it fails without a
    -- success in between, and when a test send last succeeded.
    last_success_at     BIGINT,
    last_failure_at     BIGINT,
    failing_since       BIGINT,
    tested_at           BIGINT,
    version             BIGINT NOT NULL,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    deleted_at          BIGINT
);
CREATE INDEX endpoints_workspace ON endpoints (workspace_id, created_at) WHERE deleted_at IS NULL;

-- How far each workspace's event feed has been turned into deliveries.
CREATE TABLE dispatch_cursors (
    workspace_id        UUID PRIMARY KEY REFERENCES workspaces(id),
    dispatched          BIGINT NOT NULL
);

CREATE TABLE deliveries (
    id                  UUID PRIMARY KEY,
    workspace_id        UUID NOT NULL REFERENCES workspaces(id),
    endpoint_id         UUID NOT NULL REFERENCES endpoints(id),
    event_id            UUID NOT NULL,
    event_sequence      BIGINT NOT NULL,
    event_type          TEXT NOT NULL,
    case_id             UUID,
    -- event | retry | replay | recover | test
    origin              TEXT NOT NULL,
    -- pending | succeeded | failed | cancelled
    state               TEXT NOT NULL,
    attempts            BIGINT NOT NULL DEFAULT 0,
    next_attempt_at     BIGINT,
    last_status         BIGINT,
    last_error          TEXT,
    job_id              UUID,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    finished_at         BIGINT
);
-- One delivery of an event per endpoint from the dispatcher (replays add more).
CREATE UNIQUE INDEX deliveries_event_endpoint ON deliveries (endpoint_id, event_id) WHERE origin = 'event';
CREATE INDEX deliveries_workspace ON deliveries (workspace_id, created_at);
CREATE INDEX deliveries_endpoint ON deliveries (endpoint_id, created_at);
CREATE INDEX deliveries_event ON deliveries (workspace_id, event_id);
CREATE INDEX deliveries_case ON deliveries (workspace_id, case_id, created_at);
-- Ordered endpoints: the earliest open delivery of a case to an endpoint goes first.
CREATE INDEX deliveries_open_by_case ON deliveries (endpoint_id, case_id, event_sequence) WHERE state = 'pending';

CREATE TABLE delivery_attempts (
    id                  UUID PRIMARY KEY,
    delivery_id         UUID NOT NULL REFERENCES deliveries(id),
    workspace_id        UUID NOT NULL,
    endpoint_id         UUID NOT NULL,
    attempt             BIGINT NOT NULL,
    started_at          BIGINT NOT NULL,
    duration_us         BIGINT NOT NULL,
    -- method, url, headers (secrets redacted), body (bounded)
    request             JSONB NOT NULL,
    status              BIGINT,
    -- headers, body excerpt, truncated
    response            JSONB,
    error_kind          TEXT,
    error_message       TEXT,
    -- success | retry | fail | gone
    verdict             TEXT NOT NULL
);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id, attempt);
CREATE INDEX delivery_attempts_endpoint ON delivery_attempts (endpoint_id, started_at);

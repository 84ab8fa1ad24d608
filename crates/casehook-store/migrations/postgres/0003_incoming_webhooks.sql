-- Incoming webhooks (PostgreSQL): inbound hooks, their URL tokens, the request log and the
-- idempotency keys of requests already processed; API keys may be limited to one hook.

CREATE TABLE inbound_hooks (
    id                  UUID PRIMARY KEY,
    workspace_id        UUID NOT NULL REFERENCES workspaces(id),
    name                TEXT NOT NULL,
    form_id             UUID NOT NULL REFERENCES forms(id),
    -- The whole configuration as the API accepts it (action, match, mapping,
    -- verifications without their secrets, idempotency, limits), checked by the server.
    config              JSONB NOT NULL,
    -- The verifications' secrets, sealed JSON (one list of active secrets per verification).
    secrets             BYTEA,
    enabled             BOOLEAN NOT NULL,
    version             BIGINT NOT NULL,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    deleted_at          BIGINT
);
CREATE INDEX inbound_hooks_workspace ON inbound_hooks (workspace_id, created_at) WHERE deleted_at IS NULL;

-- The secret part of a hook's URL (`/in/{token}`): looked up by its SHA-256, kept sealed so
-- admins can read the URL again. A rotated-out token works until `expires_at`.
CREATE TABLE inbound_hook_tokens (
    token_hash          TEXT PRIMARY KEY,
    hook_id             UUID NOT NULL REFERENCES inbound_hooks(id),
    workspace_id        UUID NOT NULL,
    token               BYTEA NOT NULL,
    created_at          BIGINT NOT NULL,
    expires_at          BIGINT
);
CREATE INDEX inbound_hook_tokens_hook ON inbound_hook_tokens (hook_id, created_at);

-- Every request a hook received, whatever became of it.
CREATE TABLE inbound_requests (
    id                  UUID PRIMARY KEY,
    workspace_id        UUID NOT NULL,
    hook_id             UUID NOT NULL,
    received_at         BIGINT NOT NULL,
    duration_us         BIGINT NOT NULL,
    source_ip           TEXT NOT NULL,
    -- skipvalidate / skiptriggers, comma-separated
    flags               TEXT NOT NULL,
    -- the query string, secrets redacted
    query               TEXT,
    content_type        TEXT,
    -- [[name, value], …] with secrets redacted
    headers             JSONB NOT NULL,
    -- The body up to the hook's log bound; `body_bytes` is its full size.
    body                BYTEA,
    body_bytes          BIGINT NOT NULL,
    body_truncated      BOOLEAN NOT NULL,
    -- passed | failed | not_checked
    verification        TEXT NOT NULL,
    verification_error  TEXT,
    idempotency_key     TEXT,
    status              BIGINT NOT NULL,
    -- created | updated | unchanged | event | duplicate | denied | invalid | no_match | …
    outcome             TEXT NOT NULL,
    response            JSONB NOT NULL,
    case_id             UUID,
    replay_of           UUID
);
CREATE INDEX inbound_requests_hook ON inbound_requests (hook_id, id);
CREATE INDEX inbound_requests_received ON inbound_requests (received_at);

-- Requests already processed, by idempotency key: a retry answers what the first got.
CREATE TABLE inbound_idempotency (
    hook_id             UUID NOT NULL,
    idem_key            TEXT NOT NULL,
    workspace_id        UUID NOT NULL,
    request_id          UUID NOT NULL,
    -- The first request's outcome (what its answer is rendered from).
    outcome             JSONB,
    created_at          BIGINT NOT NULL,
    expires_at          BIGINT NOT NULL,
    PRIMARY KEY (hook_id, idem_key)
);
CREATE INDEX inbound_idempotency_expiry ON inbound_idempotency (expires_at);

-- An `inbound` key may post to this one hook and nothing else.
ALTER TABLE api_keys ADD COLUMN hook_id UUID;

-- Incoming webhooks (SQLite): inbound hooks, their URL tokens, the request log and the
-- idempotency keys of requests already processed; API keys may be limited to one hook.

CREATE TABLE inbound_hooks (
    id                  BLOB PRIMARY KEY,
    workspace_id        BLOB NOT NULL REFERENCES workspaces(id),
    name                TEXT NOT NULL,
    form_id             BLOB NOT NULL REFERENCES forms(id),
    -- The whole configuration as the API accepts it (action, match, mapping,
    -- verifications without their secrets, idempotency, limits), checked by the server.
    config              TEXT NOT NULL,
    -- The verifications' secrets, sealed JSON (one list of active secrets per verification).
    secrets             BLOB,
    enabled             INTEGER NOT NULL,
    version             INTEGER NOT NULL,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    deleted_at          INTEGER
);
CREATE INDEX inbound_hooks_workspace ON inbound_hooks (workspace_id, created_at) WHERE deleted_at IS NULL;

-- The secret part of a hook's URL (`/in/{token}`): looked up by its SHA-256, kept sealed so
-- admins can read the URL again. A rotated-out token works until `expires_at`.
CREATE TABLE inbound_hook_tokens (
    token_hash          TEXT PRIMARY KEY,
    hook_id             BLOB NOT NULL REFERENCES inbound_hooks(id),
    workspace_id        BLOB NOT NULL,
    token               BLOB NOT NULL,
    created_at          INTEGER NOT NULL,
    expires_at          INTEGER
);
CREATE INDEX inbound_hook_tokens_hook ON inbound_hook_tokens (hook_id, created_at);

-- Every request a hook received, whatever became of it.
CREATE TABLE inbound_requests (
    id                  BLOB PRIMARY KEY,
    workspace_id        BLOB NOT NULL,
    hook_id             BLOB NOT NULL,
    received_at         INTEGER NOT NULL,
    duration_us         INTEGER NOT NULL,
    source_ip           TEXT NOT NULL,
    -- skipvalidate / skiptriggers, comma-separated
    flags               TEXT NOT NULL,
    -- the query string, secrets redacted
    query               TEXT,
    content_type        TEXT,
    -- [[name, value], …] with secrets redacted
    headers             TEXT NOT NULL,
    -- The body up to the hook's log bound; `body_bytes` is its full size.
    body                BLOB,
    body_bytes          INTEGER NOT NULL,
    body_truncated      INTEGER NOT NULL,
    -- passed | failed | not_checked
    verification        TEXT NOT NULL,
    verification_error  TEXT,
    idempotency_key     TEXT,
    status              INTEGER NOT NULL,
    -- created | updated | unchanged | event | duplicate | denied | invalid | no_match | …
    outcome             TEXT NOT NULL,
    response            TEXT NOT NULL,
    case_id             BLOB,
    replay_of           BLOB
);
CREATE INDEX inbound_requests_hook ON inbound_requests (hook_id, id);
CREATE INDEX inbound_requests_received ON inbound_requests (received_at);

-- Requests already processed, by idempotency key: a retry answers what the first got.
CREATE TABLE inbound_idempotency (
    hook_id             BLOB NOT NULL,
    idem_key            TEXT NOT NULL,
    workspace_id        BLOB NOT NULL,
    request_id          BLOB NOT NULL,
    -- The first request's outcome (what its answer is rendered from).
    outcome             TEXT,
    created_at          INTEGER NOT NULL,
    expires_at          INTEGER NOT NULL,
    PRIMARY KEY (hook_id, idem_key)
);
CREATE INDEX inbound_idempotency_expiry ON inbound_idempotency (expires_at);

-- An `inbound` key may post to this one hook and nothing else.
ALTER TABLE api_keys ADD COLUMN hook_id BLOB;

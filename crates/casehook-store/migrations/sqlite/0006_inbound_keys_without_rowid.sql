-- Idempotency keys are only ever found, written and pruned by their primary key or their
-- expiry: kept without a rowid, the table is one b-tree (plus the expiry index) instead of
-- two, one insert fewer for every inbound request that carries a key.
CREATE TABLE inbound_idempotency_keyed (
    hook_id             BLOB NOT NULL,
    idem_key            TEXT NOT NULL,
    workspace_id        BLOB NOT NULL,
    request_id          BLOB NOT NULL,
    -- The first request's outcome (what its answer is rendered from).
    outcome             TEXT,
    created_at          INTEGER NOT NULL,
    expires_at          INTEGER NOT NULL,
    PRIMARY KEY (hook_id, idem_key)
) WITHOUT ROWID;
INSERT INTO inbound_idempotency_keyed (hook_id, idem_key, workspace_id, request_id, outcome, created_at, expires_at)
    SELECT hook_id, idem_key, workspace_id, request_id, outcome, created_at, expires_at FROM inbound_idempotency;
DROP TABLE inbound_idempotency;
ALTER TABLE inbound_idempotency_keyed RENAME TO inbound_idempotency;
CREATE INDEX inbound_idempotency_expiry ON inbound_idempotency (expires_at);

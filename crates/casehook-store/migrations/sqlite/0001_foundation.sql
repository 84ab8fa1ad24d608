-- Foundation schema (SQLite). Timestamps are microseconds since the Unix epoch (INTEGER),
-- JSON is TEXT, UUIDs are 16-byte BLOBs (sqlx's encoding).

CREATE TABLE workspaces (
    id              BLOB PRIMARY KEY,
    name            TEXT NOT NULL,
    case_counter    INTEGER NOT NULL DEFAULT 0,
    event_counter   INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id              BLOB PRIMARY KEY,
    workspace_id    BLOB NOT NULL REFERENCES workspaces(id),
    name            TEXT NOT NULL,
    role            TEXT NOT NULL,
    key_hash        TEXT NOT NULL UNIQUE,
    key_prefix      TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    revoked_at      INTEGER
);
CREATE INDEX api_keys_workspace ON api_keys (workspace_id, created_at);

CREATE TABLE forms (
    id              BLOB PRIMARY KEY,
    workspace_id    BLOB NOT NULL REFERENCES workspaces(id),
    name            TEXT NOT NULL,
    spec            TEXT NOT NULL,
    version         INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    archived_at     INTEGER
);
CREATE INDEX forms_workspace ON forms (workspace_id, created_at);

CREATE TABLE cases (
    id              BLOB PRIMARY KEY,
    workspace_id    BLOB NOT NULL REFERENCES workspaces(id),
    form_id         BLOB NOT NULL REFERENCES forms(id),
    number          INTEGER NOT NULL,
    status          TEXT NOT NULL,
    data            TEXT NOT NULL,
    external_refs   TEXT NOT NULL,
    version         INTEGER NOT NULL,
    created_by      TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    deleted_at      INTEGER,
    UNIQUE (workspace_id, number)
);
CREATE INDEX cases_form ON cases (workspace_id, form_id, number);

CREATE TABLE case_external_refs (
    workspace_id    BLOB NOT NULL,
    source          TEXT NOT NULL,
    reference       TEXT NOT NULL,
    case_id         BLOB NOT NULL REFERENCES cases(id),
    PRIMARY KEY (workspace_id, source, reference)
);
CREATE INDEX case_external_refs_case ON case_external_refs (case_id);

CREATE TABLE events (
    workspace_id    BLOB NOT NULL REFERENCES workspaces(id),
    sequence        INTEGER NOT NULL,
    id              BLOB NOT NULL UNIQUE,
    type            TEXT NOT NULL,
    case_id         BLOB,
    form_id         BLOB,
    actor           TEXT NOT NULL,
    data            TEXT NOT NULL,
    changes         TEXT,
    skip_triggers   INTEGER NOT NULL,
    occurred_at     INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, sequence)
) WITHOUT ROWID;
CREATE INDEX events_case ON events (workspace_id, case_id, sequence);
CREATE INDEX events_type ON events (workspace_id, type, sequence);

CREATE TABLE event_types (
    workspace_id    BLOB NOT NULL REFERENCES workspaces(id),
    name            TEXT NOT NULL,
    description     TEXT NOT NULL,
    schema          TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    archived_at     INTEGER,
    PRIMARY KEY (workspace_id, name)
);

-- The durable job queue. A job is claimable when its state is pending or running and
-- due_at has passed: claiming sets due_at to the lease's end, so a job whose worker vanished
-- becomes claimable again by the same index scan.
CREATE TABLE jobs (
    id              BLOB PRIMARY KEY,
    queue           TEXT NOT NULL,
    workspace_id    BLOB,
    payload         TEXT NOT NULL,
    state           TEXT NOT NULL,
    due_at          INTEGER NOT NULL,
    lease_token     BLOB,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX jobs_due ON jobs (queue, due_at) WHERE state IN ('pending', 'running');

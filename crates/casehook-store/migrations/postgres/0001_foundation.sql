-- Foundation schema (PostgreSQL). Timestamps are microseconds since the Unix epoch (BIGINT),
-- so the same SQL serves both backends; JSON is JSONB.

CREATE TABLE workspaces (
    id              UUID PRIMARY KEY,
    name            TEXT NOT NULL,
    case_counter    BIGINT NOT NULL DEFAULT 0,
    event_counter   BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id              UUID PRIMARY KEY,
    workspace_id    UUID NOT NULL REFERENCES workspaces(id),
    name            TEXT NOT NULL,
    role            TEXT NOT NULL,
    key_hash        TEXT NOT NULL UNIQUE,
    key_prefix      TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    revoked_at      BIGINT
);
CREATE INDEX api_keys_workspace ON api_keys (workspace_id, created_at);

CREATE TABLE forms (
    id              UUID PRIMARY KEY,
    workspace_id    UUID NOT NULL REFERENCES workspaces(id),
    name            TEXT NOT NULL,
    spec            JSONB NOT NULL,
    version         BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    archived_at     BIGINT
);
CREATE INDEX forms_workspace ON forms (workspace_id, created_at);

CREATE TABLE cases (
    id              UUID PRIMARY KEY,
    workspace_id    UUID NOT NULL REFERENCES workspaces(id),
    form_id         UUID NOT NULL REFERENCES forms(id),
    number          BIGINT NOT NULL,
    status          TEXT NOT NULL,
    data            JSONB NOT NULL,
    external_refs   JSONB NOT NULL,
    version         BIGINT NOT NULL,
    created_by      JSONB NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    deleted_at      BIGINT,
    UNIQUE (workspace_id, number)
);
CREATE INDEX cases_form ON cases (workspace_id, form_id, number);

CREATE TABLE case_external_refs (
    workspace_id    UUID NOT NULL,
    source          TEXT NOT NULL,
    reference       TEXT NOT NULL,
    case_id         UUID NOT NULL REFERENCES cases(id),
    PRIMARY KEY (workspace_id, source, reference)
);
CREATE INDEX case_external_refs_case ON case_external_refs (case_id);

CREATE TABLE events (
    workspace_id    UUID NOT NULL REFERENCES workspaces(id),
    sequence        BIGINT NOT NULL,
    id              UUID NOT NULL UNIQUE,
    type            TEXT NOT NULL,
    case_id         UUID,
    form_id         UUID,
    actor           JSONB NOT NULL,
    data            JSONB NOT NULL,
    changes         JSONB,
    skip_triggers   BOOLEAN NOT NULL,
    occurred_at     BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, sequence)
);
CREATE INDEX events_case ON events (workspace_id, case_id, sequence);
CREATE INDEX events_type ON events (workspace_id, type, sequence);

CREATE TABLE event_types (
    workspace_id    UUID NOT NULL REFERENCES workspaces(id),
    name            TEXT NOT NULL,
    description     TEXT NOT NULL,
    schema          JSONB,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    archived_at     BIGINT,
    PRIMARY KEY (workspace_id, name)
);

-- The durable job queue. A job is claimable when its state is pending or running and
-- due_at has passed: claiming sets due_at to the lease's end, so a job whose worker vanished
-- becomes claimable again by the same index scan.
CREATE TABLE jobs (
    id              UUID PRIMARY KEY,
    queue           TEXT NOT NULL,
    workspace_id    UUID,
    payload         JSONB NOT NULL,
    state           TEXT NOT NULL,
    due_at          BIGINT NOT NULL,
    lease_token     UUID,
    attempts        BIGINT NOT NULL DEFAULT 0,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX jobs_due ON jobs (queue, due_at) WHERE state IN ('pending', 'running');

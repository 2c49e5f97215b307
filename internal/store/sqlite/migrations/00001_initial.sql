-- +goose Up
-- Times are Unix microseconds (UTC). JSON is stored as TEXT.

CREATE TABLE templates (
    id            TEXT PRIMARY KEY,          -- digest of the definition
    namespace     TEXT NOT NULL,
    name          TEXT NOT NULL,
    version       TEXT NOT NULL,
    definition    TEXT NOT NULL,
    current       INTEGER NOT NULL DEFAULT 1,
    registered_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX templates_current_key ON templates (namespace, name, version) WHERE current = 1;

CREATE TABLE tasks (
    id              TEXT PRIMARY KEY,
    template_id     TEXT NOT NULL REFERENCES templates (id),
    namespace       TEXT NOT NULL,
    name            TEXT NOT NULL,
    version         TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'in_progress', 'complete', 'error', 'cancelled', 'resolved_manually')),
    context         TEXT NOT NULL,
    identity_key    TEXT UNIQUE,             -- NULL: not deduplicated
    idempotency_key TEXT,
    steps_total     INTEGER NOT NULL,
    steps_done      INTEGER NOT NULL DEFAULT 0 CHECK (steps_done >= 0),
    steps_open      INTEGER NOT NULL DEFAULT 0 CHECK (steps_open >= 0),
    seq             INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    started_at      INTEGER,
    finished_at     INTEGER
);
CREATE INDEX tasks_created ON tasks (created_at DESC);
CREATE INDEX tasks_state_created ON tasks (state, created_at DESC);

CREATE TABLE steps (
    id               TEXT PRIMARY KEY,
    task_id          TEXT NOT NULL REFERENCES tasks (id),
    idx              INTEGER NOT NULL,
    name             TEXT NOT NULL,
    template_id      TEXT NOT NULL,
    handler          TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('pending', 'in_progress', 'waiting_for_retry', 'complete', 'error', 'cancelled', 'resolved_manually')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    retry_limit      INTEGER NOT NULL,
    timeout_us       INTEGER NOT NULL,
    deps_remaining   INTEGER NOT NULL CHECK (deps_remaining >= 0),
    run_at           INTEGER,                -- claimable from this time; NULL when not ready
    lease_owner      TEXT,
    lease_token      INTEGER,
    lease_expires_at INTEGER,
    results          TEXT,
    last_error       TEXT,
    error_class      TEXT,
    seq              INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    UNIQUE (task_id, idx)
);
CREATE INDEX steps_ready ON steps (run_at) WHERE run_at IS NOT NULL;
CREATE INDEX steps_leased ON steps (lease_expires_at) WHERE state = 'in_progress';

CREATE TABLE step_edges (
    parent_id TEXT NOT NULL,
    child_id  TEXT NOT NULL,
    task_id   TEXT NOT NULL,
    PRIMARY KEY (parent_id, child_id)
) WITHOUT ROWID;
CREATE INDEX step_edges_child ON step_edges (child_id);

-- The durable event log: transitions (to_state set) and custom events.
CREATE TABLE events (
    cursor      INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id     TEXT NOT NULL,
    step_id     TEXT,
    step_name   TEXT,
    seq         INTEGER,
    from_state  TEXT,
    to_state    TEXT,
    name        TEXT NOT NULL,
    data        TEXT,
    occurred_at INTEGER NOT NULL
);
CREATE INDEX events_task ON events (task_id, cursor);
CREATE INDEX events_step ON events (step_id, cursor) WHERE step_id IS NOT NULL;

-- +goose Down
DROP TABLE events;
DROP TABLE step_edges;
DROP TABLE steps;
DROP TABLE tasks;
DROP TABLE templates;

-- +goose Up
-- Task listings are newest first, paginated by the key (created_at, id):
-- every listing index ends with both, so a page is one index range scan
-- with no sort, whatever the filter (all tasks, a state, a namespace, a
-- template). The first two replace indexes that lacked the id tie-breaker.
DROP INDEX tasks_created;
CREATE INDEX tasks_created ON tasks (created_at DESC, id DESC);
DROP INDEX tasks_state_created;
CREATE INDEX tasks_state_created ON tasks (state, created_at DESC, id DESC);
CREATE INDEX tasks_namespace_created ON tasks (namespace, created_at DESC, id DESC);
CREATE INDEX tasks_name_created ON tasks (namespace, name, created_at DESC, id DESC);
-- Retention (TaskDeleteFinished) reads finished tasks by finish time.
CREATE INDEX tasks_finished ON tasks (finished_at) WHERE state IN ('complete', 'cancelled', 'resolved_manually');

-- API bearer tokens. Only the SHA-256 of a secret is stored; a request's
-- secret is looked up by its hash.
CREATE TABLE tokens (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    role       TEXT NOT NULL,
    namespace  TEXT,                          -- NULL: every namespace
    hash       TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,                       -- NULL: never expires
    revoked_at INTEGER                        -- NULL: not revoked
);

-- +goose Down
DROP TABLE tokens;
DROP INDEX tasks_finished;
DROP INDEX tasks_name_created;
DROP INDEX tasks_namespace_created;
DROP INDEX tasks_state_created;
CREATE INDEX tasks_state_created ON tasks (state, created_at DESC);
DROP INDEX tasks_created;
CREATE INDEX tasks_created ON tasks (created_at DESC);

-- +goose NO TRANSACTION
-- +goose Up
-- Task listings are newest first, paginated by the key (created_at, id):
-- every listing index ends with both (tasks_created and tasks_state_created
-- already do), so a page is one index range scan with no sort when the
-- listing is filtered by namespace or by template. The indexes are built
-- CONCURRENTLY, outside a transaction, so an upgrade does not block writes
-- to tasks; every statement is idempotent, so an interrupted upgrade can
-- simply run again.
CREATE INDEX CONCURRENTLY IF NOT EXISTS tasks_namespace_created ON tasks (namespace, created_at DESC, id DESC);
CREATE INDEX CONCURRENTLY IF NOT EXISTS tasks_name_created ON tasks (namespace, name, created_at DESC, id DESC);

-- API bearer tokens. Only the SHA-256 of a secret is stored; a request's
-- secret is looked up by its hash.
CREATE TABLE IF NOT EXISTS tokens (
    id         text PRIMARY KEY,
    name       text NOT NULL,
    role       text NOT NULL,
    namespace  text,                          -- NULL: every namespace
    hash       text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL,
    expires_at timestamptz,                   -- NULL: never expires
    revoked_at timestamptz                    -- NULL: not revoked
);

-- +goose Down
DROP TABLE IF EXISTS tokens;
DROP INDEX IF EXISTS tasks_name_created;
DROP INDEX IF EXISTS tasks_namespace_created;

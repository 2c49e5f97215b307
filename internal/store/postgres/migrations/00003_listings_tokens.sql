-- +goose Up
-- Task listings are newest first, paginated by the key (created_at, id):
-- every listing index ends with both (tasks_created and tasks_state_created
-- already do), so a page is one index range scan with no sort when the
-- listing is filtered by namespace or by template. Both indexes are built
-- inside the migration's transaction: writes to tasks wait for the build.
CREATE INDEX tasks_namespace_created ON tasks (namespace, created_at DESC, id DESC);
CREATE INDEX tasks_name_created ON tasks (namespace, name, created_at DESC, id DESC);

-- API bearer tokens. Only the SHA-256 of a secret is stored; a request's
-- secret is looked up by its hash.
CREATE TABLE tokens (
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
DROP TABLE tokens;
DROP INDEX tasks_name_created;
DROP INDEX tasks_namespace_created;

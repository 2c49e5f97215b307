-- +goose Up
-- The listing indexes of tasks in ascending order. Listings read them
-- backwards, newest first, as fast as forwards. In descending order every
-- new task's entry went to the index's left edge, and every finished
-- task's to the left edge of its state's range, where SQLite splits
-- pages in half; in ascending order they go to the right edge, where it
-- starts a new page instead: task creations on SQLite ran about 12 % faster,
-- and the pages a burn-down's finalizations write to tasks_state_created
-- fell by two thirds. Rebuilding the four indexes takes a few seconds per
-- million tasks, during which the database takes no writes.
DROP INDEX tasks_created;
CREATE INDEX tasks_created ON tasks (created_at, id);
DROP INDEX tasks_state_created;
CREATE INDEX tasks_state_created ON tasks (state, created_at, id);
DROP INDEX tasks_namespace_created;
CREATE INDEX tasks_namespace_created ON tasks (namespace, created_at, id);
DROP INDEX tasks_name_created;
CREATE INDEX tasks_name_created ON tasks (namespace, name, created_at, id);

-- +goose Down
DROP INDEX tasks_created;
CREATE INDEX tasks_created ON tasks (created_at DESC, id DESC);
DROP INDEX tasks_state_created;
CREATE INDEX tasks_state_created ON tasks (state, created_at DESC, id DESC);
DROP INDEX tasks_namespace_created;
CREATE INDEX tasks_namespace_created ON tasks (namespace, created_at DESC, id DESC);
DROP INDEX tasks_name_created;
CREATE INDEX tasks_name_created ON tasks (namespace, name, created_at DESC, id DESC);

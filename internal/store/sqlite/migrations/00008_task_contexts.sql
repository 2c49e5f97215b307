-- +goose Up
-- A task's context lives in its own table. SQLite rewrites a whole row,
-- overflow pages included, for every update of any of its columns: with
-- the context in tasks, every transition of a task (its counters, its
-- state) wrote its context again, and every read of a task on the hot
-- path read it. The context is written once, when the task is created.
CREATE TABLE task_contexts (
    task_id TEXT PRIMARY KEY REFERENCES tasks (id),
    context TEXT NOT NULL
);
INSERT INTO task_contexts (task_id, context) SELECT id, context FROM tasks;
ALTER TABLE tasks DROP COLUMN context;

-- +goose Down
ALTER TABLE tasks ADD COLUMN context TEXT NOT NULL DEFAULT '{}';
UPDATE tasks SET context = (SELECT context FROM task_contexts WHERE task_id = tasks.id);
DROP TABLE task_contexts;

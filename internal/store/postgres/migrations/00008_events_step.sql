-- +goose NO TRANSACTION
-- +goose Up
-- A step's events are read among its task's (events_task). Their own index
-- cost every log entry of a step a third index entry, on the hot path of
-- every claim and completion, for a lookup that the task's index serves.
DROP INDEX CONCURRENTLY IF EXISTS events_step;

-- +goose Down
CREATE INDEX CONCURRENTLY IF NOT EXISTS events_step ON events (step_id, cursor) WHERE step_id IS NOT NULL;

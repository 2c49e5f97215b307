-- +goose NO TRANSACTION
-- +goose Up
-- Finding where a time window starts in the event log (analytics). Built
-- CONCURRENTLY so that an upgrade does not block the writers of the log.
CREATE INDEX CONCURRENTLY IF NOT EXISTS events_occurred ON events (occurred_at);

-- +goose Down
DROP INDEX IF EXISTS events_occurred;

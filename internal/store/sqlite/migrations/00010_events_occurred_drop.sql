-- +goose Up
-- The start of a time window is found by a binary search over the log's
-- cursors (EventCursorAt), whose times follow them: SQLite's log has one
-- writer. The index cost every log entry a third index entry, on the hot
-- path of every creation, claim and completion (about a tenth of the
-- writer's time in a burn-down), for a lookup that analytics and the
-- overview make a few times a minute.
DROP INDEX IF EXISTS events_occurred;

-- +goose Down
CREATE INDEX IF NOT EXISTS events_occurred ON events (occurred_at);

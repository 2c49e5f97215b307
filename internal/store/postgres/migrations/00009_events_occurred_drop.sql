-- +goose NO TRANSACTION
-- +goose Up
-- The start of a time window is found by a binary search over the log's
-- cursors (EventCursorAt), whose times follow them within
-- store.EventCursorSlack. The index cost every log entry an index entry
-- more, on the hot path of every creation, claim and completion, for a
-- lookup that analytics and the overview make a few times a minute, and
-- it was not exact when times were out of order: the entry it found first
-- by time could come after entries of later times.
DROP INDEX CONCURRENTLY IF EXISTS events_occurred;

-- +goose Down
CREATE INDEX CONCURRENTLY IF NOT EXISTS events_occurred ON events (occurred_at);

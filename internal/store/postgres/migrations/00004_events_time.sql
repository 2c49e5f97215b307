-- +goose Up
-- Finding where a time window starts in the event log (analytics).
CREATE INDEX events_occurred ON events (occurred_at);

-- +goose Down
DROP INDEX events_occurred;

-- +goose Up
-- Webhook subscriptions, from templates and from a server's subscriptions
-- file. cursor is how far into the event log the subscription has been
-- fanned out into deliveries.
CREATE TABLE subscriptions (
    id         TEXT PRIMARY KEY,              -- source/name
    source     TEXT NOT NULL,                 -- server, or template:NS/NAME@VERSION
    name       TEXT NOT NULL,
    namespace  TEXT,                          -- NULL: every namespace
    task_name  TEXT,
    version    TEXT,
    spec       TEXT NOT NULL,                 -- JSON definition
    cursor     INTEGER NOT NULL,
    active     INTEGER NOT NULL DEFAULT 1,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX subscriptions_source ON subscriptions (source);

-- One event to deliver to one subscription. The id (time-ordered) is the
-- delivery id receivers see; the payload is kept so that retention of the
-- event log does not lose it.
CREATE TABLE deliveries (
    id                TEXT PRIMARY KEY,
    subscription_id   TEXT NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    subscription_name TEXT NOT NULL,
    event_cursor      INTEGER NOT NULL,
    event_name        TEXT NOT NULL,
    task_id           TEXT NOT NULL,
    namespace         TEXT NOT NULL,
    payload           TEXT NOT NULL,
    state             TEXT NOT NULL,          -- pending, delivered, failed
    attempts          INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   INTEGER NOT NULL,
    last_status       INTEGER NOT NULL DEFAULT 0,
    last_error        TEXT NOT NULL DEFAULT '',
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    delivered_at      INTEGER,
    UNIQUE (subscription_id, event_cursor)
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX deliveries_subscription ON deliveries (subscription_id, id DESC);
CREATE INDEX deliveries_task ON deliveries (task_id, id DESC);
CREATE INDEX deliveries_delivered ON deliveries (delivered_at) WHERE state = 'delivered';

-- +goose Down
DROP TABLE deliveries;
DROP TABLE subscriptions;

-- +goose Up
-- Webhook subscriptions, from templates and from a server's subscriptions
-- file. cursor is how far into the event log the subscription has been
-- fanned out into deliveries.
CREATE TABLE IF NOT EXISTS subscriptions (
    id         text PRIMARY KEY,              -- source/name
    source     text NOT NULL,                 -- server, or template:NS/NAME@VERSION
    name       text NOT NULL,
    namespace  text,                          -- NULL: every namespace
    task_name  text,
    version    text,
    spec       json NOT NULL,
    cursor     bigint NOT NULL,
    active     boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS subscriptions_source ON subscriptions (source);

-- One event to deliver to one subscription. The id (time-ordered) is the
-- delivery id receivers see; the payload is kept so that retention of the
-- event log does not lose it.
CREATE TABLE IF NOT EXISTS deliveries (
    id                text PRIMARY KEY,
    subscription_id   text NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    subscription_name text NOT NULL,
    event_cursor      bigint NOT NULL,
    event_name        text NOT NULL,
    task_id           text NOT NULL,
    namespace         text NOT NULL,
    payload           json NOT NULL,   -- json, not jsonb: event data may hold \u0000
    state             text NOT NULL,          -- pending, delivered, failed
    attempts          integer NOT NULL DEFAULT 0,
    next_attempt_at   timestamptz NOT NULL,
    last_status       integer NOT NULL DEFAULT 0,
    last_error        text NOT NULL DEFAULT '',
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    delivered_at      timestamptz,
    UNIQUE (subscription_id, event_cursor)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS deliveries_subscription ON deliveries (subscription_id, id DESC);
CREATE INDEX IF NOT EXISTS deliveries_task ON deliveries (task_id, id DESC);
CREATE INDEX IF NOT EXISTS deliveries_delivered ON deliveries (delivered_at) WHERE state = 'delivered';

-- +goose Down
DROP TABLE IF EXISTS deliveries;
DROP TABLE IF EXISTS subscriptions;

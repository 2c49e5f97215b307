-- +goose Up
-- Leaderships for maintenance work: one holder per name until expires_at.
CREATE TABLE leaders (
    name       text PRIMARY KEY,
    holder     text NOT NULL,
    expires_at timestamptz NOT NULL
);

-- +goose Down
DROP TABLE leaders;

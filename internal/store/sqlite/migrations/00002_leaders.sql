-- +goose Up
-- Leaderships for maintenance work: one holder per name until expires_at.
CREATE TABLE leaders (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);

-- +goose Down
DROP TABLE leaders;

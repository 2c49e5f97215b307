-- +goose NO TRANSACTION
-- +goose Up
-- Claims take ready steps in (run_at, idx) order. An index in that order
-- lets a claim stop after its LIMIT instead of sorting every ready step.
-- Built CONCURRENTLY so that an upgrade does not block the workers.
CREATE INDEX CONCURRENTLY IF NOT EXISTS steps_claim ON steps (run_at, idx) WHERE run_at IS NOT NULL;
DROP INDEX CONCURRENTLY IF EXISTS steps_ready;

-- +goose Down
CREATE INDEX CONCURRENTLY IF NOT EXISTS steps_ready ON steps (run_at) WHERE run_at IS NOT NULL;
DROP INDEX CONCURRENTLY IF EXISTS steps_claim;

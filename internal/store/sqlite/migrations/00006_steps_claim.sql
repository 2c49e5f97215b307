-- +goose Up
-- Claims take ready steps in (run_at, idx) order. An index in that order
-- lets a claim stop after its LIMIT instead of sorting every ready step.
CREATE INDEX IF NOT EXISTS steps_claim ON steps (run_at, idx) WHERE run_at IS NOT NULL;
DROP INDEX IF EXISTS steps_ready;

-- +goose Down
CREATE INDEX IF NOT EXISTS steps_ready ON steps (run_at) WHERE run_at IS NOT NULL;
DROP INDEX IF EXISTS steps_claim;

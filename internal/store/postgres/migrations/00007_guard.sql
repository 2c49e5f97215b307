-- +goose Up
-- tasker_guard raises an error unless ok: a guarded write checks on the
-- server that it changed the rows it expected, so that a mismatch aborts
-- the transaction even when its COMMIT was sent in the same batch. The
-- store turns SQLSTATE TK409 into a conflict.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION tasker_guard(ok boolean, what text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT ok THEN
        RAISE EXCEPTION '%', what USING ERRCODE = 'TK409';
    END IF;
    RETURN true;
END
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION IF EXISTS tasker_guard(boolean, text);

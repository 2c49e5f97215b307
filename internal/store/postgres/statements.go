package postgres

// The statements of a worker's hot path, named so that Warm prepares the
// very texts the store sends (hotStatements).

// insertTaskSQL inserts a task; with RequireCurrent ($12) only while its
// template is current (the primary key of templates finds it). The
// conflict clause names the predicate of a partial unique index on
// identity_key, which it also infers the table's unique constraint by, so
// that a later schema can replace the constraint with that index (no index
// entry for tasks without an identity key) without breaking the task
// creations of this build.
const insertTaskSQL = `INSERT INTO tasks (id, template_id, namespace, name, version, state, context,
		identity_key, idempotency_key, steps_total, steps_done, steps_open, seq, created_at, updated_at, started_at)
		SELECT $1, $2, $3, $4, $5, 'in_progress', $6::json, $7, $8, $9, 0, $10, 2, $11, $11, $11
		WHERE NOT $12 OR EXISTS (SELECT 1 FROM templates WHERE id = $2 AND current)
		ON CONFLICT (identity_key) WHERE identity_key IS NOT NULL DO NOTHING
		RETURNING txid_current()`

// insertStepsSQL inserts a task's steps; those claimed at creation ($12) are
// stored running, under the claim's lease.
const insertStepsSQL = `INSERT INTO steps (id, task_id, idx, name, template_id, handler, state, attempts, max_attempts, retry_limit,
			timeout_us, deps_remaining, run_at, seq, created_at, updated_at, lease_owner, lease_token, lease_expires_at, started_at)
		SELECT id, $2, i, n, $3, h, CASE WHEN c THEN 'in_progress' ELSE 'pending' END, CASE WHEN c THEN 1 ELSE 0 END,
			m, m, t, d, r, CASE WHEN c THEN 2 ELSE 1 END, $4, $4,
			CASE WHEN c THEN $13::text END, CASE WHEN c THEN $14::bigint END, CASE WHEN c THEN $15::timestamptz END,
			CASE WHEN c THEN $4::timestamptz END
		FROM unnest($1::text[], $5::int[], $6::text[], $7::text[], $8::int[], $9::bigint[], $10::int[], $11::timestamptz[], $12::bool[])
			AS u(id, i, n, h, m, t, d, r, c)
		WHERE EXISTS (SELECT 1 FROM tasks WHERE id = $2)`

// insertEdgesSQL inserts a task's dependency edges.
const insertEdgesSQL = `INSERT INTO step_edges (parent_id, child_id, task_id)
			SELECT p, c, $3 FROM unnest($1::text[], $2::text[]) AS u(p, c)
			WHERE EXISTS (SELECT 1 FROM tasks WHERE id = $3)`

// countersSQL adds deltas to the step counters of tasks (sent guarded).
const countersSQL = `UPDATE tasks t SET steps_done = t.steps_done + d.done, steps_open = t.steps_open + d.open, updated_at = $4
			FROM unnest($1::text[], $2::int[], $3::int[]) AS d(id, done, open) WHERE t.id = d.id`

// notifySQL wakes the workers of other processes (LISTEN/NOTIFY).
const notifySQL = "SELECT pg_notify($1, $2)"

// lockLogSQL takes the log's advisory lock, held until commit: the log's
// entries are written in commit order.
const lockLogSQL = "SELECT pg_advisory_xact_lock($1)"

// lockTasksSQL locks tasks FOR UPDATE in id order.
const lockTasksSQL = "SELECT " + lockedTaskColumns + " FROM tasks WHERE id = ANY($1) ORDER BY id FOR UPDATE"

// lockStepTasksSQL locks the tasks of steps ($1) FOR UPDATE in id order,
// but for those the transaction holds already ($2).
const lockStepTasksSQL = "SELECT " + lockedTaskColumns + " FROM tasks WHERE id IN (SELECT task_id FROM steps WHERE id = ANY($1)) AND NOT (id = ANY($2)) ORDER BY id FOR UPDATE"

// lockStepsSQL locks steps FOR UPDATE in id order.
const lockStepsSQL = "SELECT " + stepColumns + " FROM steps WHERE id = ANY($1) ORDER BY id FOR UPDATE"

// xidSQL asks for the transaction's id, once one is assigned.
const xidSQL = "SELECT txid_current_if_assigned()"

// renewSQL renews the leases of running steps still held ($1 to $3) by a
// worker ($5).
const renewSQL = `UPDATE steps s SET lease_expires_at = $4
		FROM unnest($1::text[], $2::bigint[], $3::int[]) AS l(id, token, attempt)
		WHERE s.id = l.id AND s.state = 'in_progress' AND s.lease_owner = $5 AND s.lease_token = l.token AND s.attempts = l.attempt
		RETURNING s.id, s.lease_token, s.attempts`

// insertEventsSQL appends log entries, in the order given.
const insertEventsSQL = `INSERT INTO events (task_id, step_id, step_name, seq, from_state, to_state, name, data, occurred_at)
		SELECT t, s, sn, q, f, o, n, d::json, at
		FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[], $6::text[], $7::text[], $8::text[], $9::timestamptz[])
			WITH ORDINALITY AS u(t, s, sn, q, f, o, n, d, at, ord)
		ORDER BY ord
		RETURNING cursor`

// failedStepsSQL names a task's failed and cancelled steps, in template
// order, for the error of a task that ends in error.
const failedStepsSQL = "SELECT name FROM steps WHERE task_id = $1 AND state IN ('error', 'cancelled') ORDER BY idx"

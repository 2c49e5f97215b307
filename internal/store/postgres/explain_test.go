package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tasker-go/tasker/internal/store"
)

// The hot queries use the indexes designed for them. With enough rows and
// fresh statistics, each plan must name its index.
func TestHotQueriesUseTheirIndexes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openWithTemplate(t)
	// 40 chains of 100 steps: 4,000 steps, 40 of them ready.
	specs := make([]store.StepSpec, 100)
	for i := range specs {
		specs[i] = store.StepSpec{Name: fmt.Sprint("s", i), Handler: "h", MaxAttempts: 3, Timeout: time.Minute}
		if i > 0 {
			specs[i].Parents = []int{i - 1}
		}
	}
	var taskID, stepID string
	for range 40 {
		res, err := s.TaskCreate(ctx, &store.TaskCreateParams{TemplateID: "t", Namespace: "n", Name: "x", Version: "1.0.0",
			Context: json.RawMessage(`{}`), Steps: specs, Now: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		taskID = res.Task.ID
	}
	if _, err := s.StepClaim(ctx, &store.StepClaimParams{Worker: "w", LeaseToken: 1, Limit: 10, Now: time.Now(), LeaseTTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if err := s.pool.QueryRow(ctx, "SELECT id FROM steps WHERE task_id = $1 AND idx = 0", taskID).Scan(&stepID); err != nil {
		t.Fatal(err)
	}
	// Many finished tasks, as a long-running database has.
	if _, err := s.pool.Exec(ctx, `INSERT INTO tasks (id, template_id, namespace, name, version, state, context, steps_total,
		steps_done, steps_open, seq, created_at, updated_at, finished_at)
		SELECT 'old-' || g, 't', 'n', 'x', '1.0.0', 'complete', '{}', 1, 1, 0, 3, now() - g * interval '1 second', now(), now()
		FROM generate_series(1, 20000) g`); err != nil {
		t.Fatal(err)
	}
	// And tasks of many other templates, so that filters by namespace or
	// template are selective.
	if _, err := s.pool.Exec(ctx, `INSERT INTO tasks (id, template_id, namespace, name, version, state, context, steps_total,
		steps_done, steps_open, seq, created_at, updated_at, finished_at)
		SELECT 'other-' || g, 't', 'ns' || (g % 100), 'name' || (g % 7), '1.0.0', 'complete', '{}', 1, 1, 0, 3,
			now() - g * interval '1 second', now(), now()
		FROM generate_series(1, 20000) g`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, "ANALYZE"); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	eventList := func(p *store.EventListParams) (string, []any) {
		q, args, err := eventListQuery(p)
		if err != nil {
			t.Fatal(err)
		}
		return q, args
	}
	taskHistory, taskHistoryArgs := eventList(&store.EventListParams{TaskID: taskID})
	stepHistory, stepHistoryArgs := eventList(&store.EventListParams{StepID: stepID})
	stream, streamArgs := eventList(&store.EventListParams{})
	streamFiltered, streamFilteredArgs := eventList(&store.EventListParams{Namespace: "n", Names: []string{"step.*", "task.failed"},
		Since: now.Add(-time.Hour), TransitionsOnly: true})
	cursor := &store.TaskCursor{CreatedAt: now.Add(-time.Hour), ID: "old-3600"}
	listAll, listAllArgs := taskListSQL(&store.TaskListParams{After: cursor, Limit: 50})
	listState, listStateArgs := taskListSQL(&store.TaskListParams{State: "error", After: cursor, Limit: 50})
	listNS, listNSArgs := taskListSQL(&store.TaskListParams{Namespace: "ns7", After: cursor, Limit: 50})
	listName, listNameArgs := taskListSQL(&store.TaskListParams{Namespace: "ns7", Name: "name3", Limit: 50})
	tests := []struct {
		name  string
		sql   string
		args  []any
		index string
		// hot statements run under indexPlansSQL, as in claims and completions.
		hot bool
	}{
		{"claim", claimSQL, []any{now, []string{"h"}, nil, nil, nil, 10, "w", int64(1), now}, "steps_claim", true},
		{"rescue", expiredLeasesSQL, []any{now, nil, 1000}, "steps_leased", false},
		{"release children", releaseChildrenSQL, []any{now, []string{stepID}}, "step_edges_pkey", true},
		{"step transitions", stepWritesSQL, []any{now, []string{stepID}, []string{"in_progress"}, []string{"complete"}, []*time.Time{nil},
			[]*time.Time{&now}, []bool{true}, []int64{7}, []int32{1}, []bool{true}, []*string{nil}, []bool{false}, []*string{nil},
			[]*string{nil}, []int32{0}}, "steps_pkey", true},
		{"completion", completeSQL, []any{now, []string{stepID}, []string{"complete"}, []*time.Time{nil}, []*time.Time{&now}, []int64{7},
			[]int32{1}, []*string{nil}, []bool{false}, []*string{nil}, []*string{nil}, "in_progress"}, "step_edges_pkey", true},
		{"claim's update (by the locked rows' ctid)", claimSQL, []any{now, []string{"h"}, nil, nil, nil, 10, "w", int64(1), now}, "Tid Scan on steps", true},
		{"claim's tasks", claimSQL, []any{now, []string{"h"}, nil, nil, nil, 10, "w", int64(1), now}, "tasks_pkey", true},
		{"claim's dependencies", claimSQL, []any{now, []string{"h"}, nil, nil, nil, 10, "w", int64(1), now}, "step_edges_child", true},
		{"leftover tasks", leftoverTasksSQL, []any{1000}, "tasks_state_created", false},
		{"task history", taskHistory, taskHistoryArgs, "events_task", false},
		{"step history", stepHistory, stepHistoryArgs, "events_task", false},
		{"event stream", stream, streamArgs, "events_pkey", false},
		{"filtered event stream", streamFiltered, streamFilteredArgs, "events_pkey", false},
		{"task list", listAll, listAllArgs, "tasks_created", false},
		{"task list by state", listState, listStateArgs, "tasks_state_created", false},
		{"task list by namespace", listNS, listNSArgs, "tasks_namespace_created", false},
		{"task list by template", listName, listNameArgs, "tasks_name_created", false},
		{"ready queue depth", countReadySQL, []any{now}, "steps_claim", false},
	}
	for _, tc := range tests {
		tx, err := s.pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// Force the generic plan the server uses after repeated executions.
		setup := "SET LOCAL plan_cache_mode = force_generic_plan"
		if tc.hot {
			setup = indexPlansSQL
		}
		if _, err := tx.Exec(ctx, setup); err != nil {
			t.Fatal(err)
		}
		var plan string
		rows, err := tx.Query(ctx, "EXPLAIN "+tc.sql, tc.args...)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				t.Fatal(err)
			}
			plan += line + "\n"
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		_ = tx.Rollback(ctx)
		if !strings.Contains(plan, tc.index) {
			t.Errorf("%s does not use %s:\n%s", tc.name, tc.index, plan)
		}
		// A hot statement reads only the rows it needs: no scan of a whole
		// table or index, no hash join building one side from a whole
		// index, and a claim stops after its LIMIT instead of sorting
		// every ready step.
		if tc.hot && (strings.Contains(plan, "Seq Scan") || strings.Contains(plan, "Hash Join") || strings.Contains(plan, "Full")) {
			t.Errorf("%s reads more than the rows it needs:\n%s", tc.name, plan)
		}
		if tc.name == "claim" && strings.Contains(plan, "Sort") {
			t.Errorf("%s sorts instead of reading %s in order:\n%s", tc.name, tc.index, plan)
		}
	}
}

// A completion finds each outcome's step by its primary key, even when a
// burst of work has outrun the table's statistics and many steps run: a
// plan that read the running steps (steps_leased) and compared each with
// every outcome was quadratic in the batch.
func TestCompletionFindsItsStepsByKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openWithTemplate(t)
	// One task of 300 independent steps, all claimed: 300 running steps,
	// in a table analyzed (autovacuum permitting) while it was nearly empty.
	specs := make([]store.StepSpec, 300)
	for i := range specs {
		specs[i] = store.StepSpec{Name: fmt.Sprint("s", i), Handler: "h", MaxAttempts: 3, Timeout: time.Minute}
	}
	if _, err := s.pool.Exec(ctx, "ANALYZE steps"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.TaskCreate(ctx, &store.TaskCreateParams{TemplateID: "t", Namespace: "n", Name: "x", Version: "1.0.0",
		Context: json.RawMessage(`{}`), Steps: specs, Now: time.Now()}); err != nil {
		t.Fatal(err)
	}
	claimed, err := s.StepClaim(ctx, &store.StepClaimParams{Worker: "w", LeaseToken: 1, Limit: 300, Now: time.Now(), LeaseTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	// EXECUTE's arguments, written out: every claimed step completes.
	n := len(claimed.Steps)
	ids, tokens, attempts := make([]string, n), make([]string, n), make([]string, n)
	for i, cs := range claimed.Steps {
		ids[i], tokens[i], attempts[i] = "'"+cs.Step.ID+"'", fmt.Sprint(cs.Step.LeaseToken), fmt.Sprint(cs.Step.Attempts)
	}
	args := fmt.Sprintf(`now(), ARRAY[%s], array_fill('complete'::text, ARRAY[%[2]d]), array_fill(NULL::timestamptz, ARRAY[%[2]d]),
		array_fill(now(), ARRAY[%[2]d]), ARRAY[%s]::bigint[], ARRAY[%s]::int[], array_fill(NULL::text, ARRAY[%[2]d]),
		array_fill(false, ARRAY[%[2]d]), array_fill(NULL::text, ARRAY[%[2]d]), array_fill(NULL::text, ARRAY[%[2]d]), 'in_progress'`,
		strings.Join(ids, ","), n, strings.Join(tokens, ","), strings.Join(attempts, ","))
	prepared := 0
	explain := func(sql, args string) string {
		prepared++
		name := fmt.Sprint("completion_", prepared)
		tx, err := s.pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback(ctx) }()
		if _, err := tx.Exec(ctx, indexPlansSQL); err != nil {
			t.Fatal(err)
		}
		// A prepared statement, as the store runs it, so that the plan is
		// the generic one (EXPLAIN of the statement itself would plan it
		// with the parameters' values).
		if _, err := tx.Exec(ctx, `PREPARE `+name+`(timestamptz, text[], text[], timestamptz[], timestamptz[], bigint[], int[],
			text[], bool[], text[], text[], text) AS `+sql); err != nil {
			t.Fatal(err)
		}
		defer func() { _, _ = tx.Exec(ctx, "DEALLOCATE "+name) }()
		rows, err := tx.Query(ctx, "EXPLAIN (ANALYZE, COSTS OFF) EXECUTE "+name+"("+args+")")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var plan string
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				t.Fatal(err)
			}
			plan += line + "\n"
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return plan
	}
	plan := explain(completeSQL, args)
	if strings.Contains(plan, "steps_leased") || !strings.Contains(plan, "steps_pkey") {
		t.Errorf("the completion of %d running steps does not find them by key:\n%s", n, plan)
	}
	// The statement with the state written as a literal, as it was, still
	// gets the quadratic plan here: the test sees what it guards against.
	literal := strings.Replace(completeSQL, "s.state = $12", "s.state = 'in_progress' AND $12::text IS NOT NULL", 1)
	if plan := explain(literal, args); !strings.Contains(plan, "steps_leased") {
		t.Logf("with a literal state the plan would not read steps_leased either; the setup no longer reproduces the problem:\n%s", plan)
	}
}

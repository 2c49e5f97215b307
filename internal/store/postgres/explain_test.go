package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tasker-go/tasker/internal/store"
	"github.com/tasker-go/tasker/internal/store/postgres/pgtest"
)

// The hot queries use the indexes designed for them. With enough rows and
// fresh statistics, each plan must name its index.
func TestHotQueriesUseTheirIndexes(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t)
	ctx := context.Background()
	s, err := Open(ctx, url, Options{Schema: pgtest.Schema(t, url)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.TemplateRegister(ctx, &store.TemplateRegisterParams{ID: "t", Namespace: "n", Name: "x", Version: "1.0.0",
		Definition: json.RawMessage(`{}`), Now: time.Now()}); err != nil {
		t.Fatal(err)
	}
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
	}{
		{"claim", claimSQL, []any{now, []string{"h"}, nil, nil, nil, 10, "w", int64(1), now}, "steps_claim"},
		{"rescue", expiredLeasesSQL, []any{now, nil, 1000}, "steps_leased"},
		{"release children", releaseChildrenSQL, []any{now, []string{stepID}}, "step_edges_pkey"},
		{"dependency results", dependencyResultsSQL, []any{[]string{stepID}}, "step_edges_child"},
		{"leftover tasks", leftoverTasksSQL, []any{1000}, "tasks_state_created"},
		{"task history", taskHistory, taskHistoryArgs, "events_task"},
		{"event stream", stream, streamArgs, "events_pkey"},
		{"filtered event stream", streamFiltered, streamFilteredArgs, "events_pkey"},
		{"task list", listAll, listAllArgs, "tasks_created"},
		{"task list by state", listState, listStateArgs, "tasks_state_created"},
		{"task list by namespace", listNS, listNSArgs, "tasks_namespace_created"},
		{"task list by template", listName, listNameArgs, "tasks_name_created"},
		{"ready queue depth", countReadySQL, []any{now}, "steps_claim"},
	}
	for _, tc := range tests {
		tx, err := s.pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// Force the generic plan the server uses after repeated executions.
		if _, err := tx.Exec(ctx, "SET LOCAL plan_cache_mode = force_generic_plan"); err != nil {
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
		// A claim must stop after its LIMIT, not sort every ready step.
		if tc.name == "claim" && strings.Contains(plan, "Sort") {
			t.Errorf("%s sorts instead of reading %s in order:\n%s", tc.name, tc.index, plan)
		}
	}
}

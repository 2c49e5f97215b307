package sqlite

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tasker-go/tasker/internal/store"
)

// The hot queries use the indexes designed for them, whatever the
// statistics: SQLite plans from the schema, on each driver alike.
func TestHotQueriesUseTheirIndexes(t *testing.T) {
	t.Parallel()
	for _, d := range Drivers() {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			testHotQueriesUseTheirIndexes(t, d)
		})
	}
}

func testHotQueriesUseTheirIndexes(t *testing.T, driver string) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "tasker.db"), Options{Synchronous: "NORMAL", Driver: driver})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.TemplateRegister(ctx, &store.TemplateRegisterParams{ID: "t", Namespace: "n", Name: "x", Version: "1.0.0",
		Definition: json.RawMessage(`{}`), Now: time.Now()}); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		if _, err := s.TaskCreate(ctx, &store.TaskCreateParams{TemplateID: "t", Namespace: "n", Name: "x", Version: "1.0.0",
			Context: json.RawMessage(`{}`), Steps: []store.StepSpec{{Name: "a", Handler: "h", MaxAttempts: 1, Timeout: time.Minute}},
			Now: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.wdb.ExecContext(ctx, "ANALYZE"); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	cursor := &store.TaskCursor{CreatedAt: now, ID: "x"}
	eventList := func(p *store.EventListParams) (string, []any) {
		q, args, err := eventListQuery(p)
		if err != nil {
			t.Fatal(err)
		}
		return q, args
	}
	type query struct {
		sql  string
		args []any
	}
	q := func(sql string, args []any) query { return query{sql, args} }
	claimWhere, claimArgs := claimFilter(now, []string{"noop"}, nil, nil, nil, 10)
	claim := q(claimSelect(claimWhere), claimArgs)
	tests := []struct {
		name  string
		q     query
		index string
	}{
		{"task list", q(taskListQuery(&store.TaskListParams{After: cursor, Limit: 50})), "tasks_created"},
		{"task list by state", q(taskListQuery(&store.TaskListParams{State: "error", After: cursor})), "tasks_state_created"},
		{"task list by namespace", q(taskListQuery(&store.TaskListParams{Namespace: "n", After: cursor})), "tasks_namespace_created"},
		{"task list by template", q(taskListQuery(&store.TaskListParams{Namespace: "n", Name: "x", After: cursor})), "tasks_name_created"},
		{"ready queue depth", q(countReadySQL, []any{us(now)}), "steps_claim"},
		{"claim", claim, "steps_claim"},
		{"task history", q(eventList(&store.EventListParams{TaskID: "x"})), "events_task"},
		{"step history", q(eventList(&store.EventListParams{StepID: "x"})), "events_task"},
		{"event stream", q(eventList(&store.EventListParams{Namespace: "n", Names: []string{"step.*"}, Since: now})), "PRIMARY KEY"},
		{"token by hash", q("SELECT "+tokenColumns+" FROM tokens WHERE hash = ?", []any{"h"}), "sqlite_autoindex_tokens_2"},
	}
	for _, tc := range tests {
		rows, err := s.rdb.QueryContext(ctx, "EXPLAIN QUERY PLAN "+tc.q.sql, tc.q.args...)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var plan string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan += fmt.Sprintf("%d %d %s\n", id, parent, detail)
		}
		rows.Close()
		if !strings.Contains(plan, tc.index) || strings.Contains(plan, "TEMP B-TREE") {
			t.Errorf("%s does not use %s without a sort:\n%s", tc.name, tc.index, plan)
		}
	}
}

package postgres

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/tasker-go/tasker/internal/store"
	"github.com/tasker-go/tasker/internal/store/postgres/pgtest"
)

// preparedOn lists the statements prepared on each idle connection of the
// store's pool: those Warm prepared (named by pgx "stmt_…") and those
// pgx's statement cache prepared on first use ("stmtcache_…").
func preparedOn(t *testing.T, s *Store) (warmed, lazy [][]string) {
	t.Helper()
	ctx := context.Background()
	conns := s.pool.AcquireAllIdle(ctx)
	defer func() {
		for _, c := range conns {
			c.Release()
		}
	}()
	for _, c := range conns {
		// The simple protocol prepares nothing itself.
		rows, err := c.Conn().Query(ctx, "SELECT name, statement FROM pg_prepared_statements", pgx.QueryExecModeSimpleProtocol)
		if err != nil {
			t.Fatal(err)
		}
		var w, l []string
		for rows.Next() {
			var name, sql string
			if err := rows.Scan(&name, &sql); err != nil {
				t.Fatal(err)
			}
			switch {
			case strings.HasPrefix(name, "stmtcache_"):
				l = append(l, sql)
			case strings.HasPrefix(name, "stmt_"):
				w = append(w, sql)
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		warmed, lazy = append(warmed, w), append(lazy, l)
	}
	return warmed, lazy
}

// openWarmed opens a store at url with opts, closed when the test ends,
// calls Warm, and checks that it left want connections open.
func openWarmed(t *testing.T, url string, opts Options, want int32) *Store {
	t.Helper()
	ctx := context.Background()
	s, err := Open(ctx, url, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Warm(ctx); err != nil {
		t.Fatal(err)
	}
	if n := s.pool.Stat().TotalConns(); n != want {
		t.Fatalf("%d connections open after Warm, want %d", n, want)
	}
	return s
}

// Warm opens every connection of the pool and prepares the hot path's
// statements on each; a worker's hot path then prepares nothing more, and
// a connection the pool opens later prepares them as it opens.
func TestWarmPreparesTheHotPath(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t)
	ctx := context.Background()
	schema := pgtest.Schema(t, url)
	setup, err := Open(ctx, url, Options{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := setup.TemplateRegister(ctx, &store.TemplateRegisterParams{ID: "t", Namespace: "n", Name: "x", Version: "1.0.0",
		Definition: json.RawMessage(`{}`), Now: time.Now()}); err != nil {
		t.Fatal(err)
	}
	setup.Close()

	s := openWarmed(t, url, Options{Schema: schema, MaxConns: 3, SkipMigrate: true}, 3)
	hot := len(hotStatements())
	warmed, _ := preparedOn(t, s)
	for i, w := range warmed {
		if len(w) != hot {
			t.Errorf("connection %d: %d statements prepared by Warm, want %d", i, len(w), hot)
		}
	}
	_, before := preparedOn(t, s)

	// A worker's hot path: creations (with edges), claims, completions with
	// a claim, a retry, a failure, lease renewals.
	now := time.Now()
	for range 4 {
		if _, err := s.TaskCreate(ctx, &store.TaskCreateParams{TemplateID: "t", Namespace: "n", Name: "x", Version: "1.0.0",
			Context: json.RawMessage(`{}`), Now: now, Steps: []store.StepSpec{
				{Name: "a", Handler: "h", MaxAttempts: 2, Timeout: time.Minute},
				{Name: "b", Handler: "h", MaxAttempts: 2, Timeout: time.Minute, Parents: []int{0}}}}); err != nil {
			t.Fatal(err)
		}
	}
	claimed, err := s.StepClaim(ctx, &store.StepClaimParams{Worker: "w", LeaseToken: 1, Limit: 4, Now: now, LeaseTTL: time.Minute})
	if err != nil || len(claimed.Steps) != 4 {
		t.Fatalf("claim: %+v, %v", claimed, err)
	}
	leases := make([]store.Lease, len(claimed.Steps))
	for i, cs := range claimed.Steps {
		leases[i] = store.Lease{StepID: cs.Step.ID, LeaseToken: cs.Step.LeaseToken, Attempt: cs.Step.Attempts}
	}
	if _, err := s.StepLeaseRenew(ctx, &store.StepLeaseRenewParams{Worker: "w", Leases: leases, Now: now, TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	outcome := func(cs *store.ClaimedStep, kind store.OutcomeKind) store.StepOutcome {
		return store.StepOutcome{StepID: cs.Step.ID, LeaseToken: cs.Step.LeaseToken, Attempt: cs.Step.Attempts, Kind: kind,
			Result: json.RawMessage(`1`), Error: "e", NextAttemptAt: now}
	}
	done, err := s.StepCompleteMany(ctx, &store.StepCompleteManyParams{Worker: "w", Now: now, Outcomes: []store.StepOutcome{
		outcome(claimed.Steps[0], store.OutcomeComplete), outcome(claimed.Steps[1], store.OutcomeComplete),
		outcome(claimed.Steps[2], store.OutcomeRetry), outcome(claimed.Steps[3], store.OutcomeFail)},
		Claim: &store.StepClaimParams{Worker: "w", LeaseToken: 2, Limit: 8, LeaseTTL: time.Minute}})
	if err != nil || len(done.Stale) != 0 || len(done.Claimed) != 3 {
		t.Fatalf("complete: %+v, %v", done, err)
	}
	var last []store.StepOutcome
	for _, cs := range done.Claimed {
		last = append(last, outcome(cs, store.OutcomeComplete))
	}
	if _, err := s.StepCompleteMany(ctx, &store.StepCompleteManyParams{Worker: "w", Now: now, Outcomes: last}); err != nil {
		t.Fatal(err)
	}

	// The connections come in no fixed order: compare what all of them
	// prepared on first use, before and after.
	_, after := preparedOn(t, s)
	had := slices.Concat(before...)
	if added := slices.DeleteFunc(slices.Concat(after...), func(sql string) bool { return slices.Contains(had, sql) }); len(added) > 0 {
		t.Errorf("the hot path prepared statements that Warm did not (add them to hotStatements):\n%s", strings.Join(added, "\n---\n"))
	}

	// Connections opened after Warm prepare the statements themselves.
	s.pool.Reset()
	c, err := s.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.Release()
	warmed, _ = preparedOn(t, s)
	if len(warmed) == 0 || len(warmed[0]) != hot {
		t.Fatalf("a connection opened after Warm prepared %v, want the %d hot statements", warmed, hot)
	}
}

// Behind a pooler in transaction mode the URL asks for no prepared
// statements: Warm then opens the connections and prepares nothing, and
// the hot path works.
func TestWarmPreparesNothingWithoutPreparedStatements(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t)
	ctx := context.Background()
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	s := openWarmed(t, url+sep+"default_query_exec_mode=exec", Options{Schema: pgtest.Schema(t, url), MaxConns: 2}, 2)
	if _, err := s.TemplateRegister(ctx, &store.TemplateRegisterParams{ID: "t", Namespace: "n", Name: "x", Version: "1.0.0",
		Definition: json.RawMessage(`{}`), Now: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.TaskCreate(ctx, &store.TaskCreateParams{TemplateID: "t", Namespace: "n", Name: "x", Version: "1.0.0",
		Context: json.RawMessage(`{}`), Now: time.Now(), Steps: []store.StepSpec{{Name: "a", Handler: "h", MaxAttempts: 1, Timeout: time.Minute}}}); err != nil {
		t.Fatal(err)
	}
	if claimed, err := s.StepClaim(ctx, &store.StepClaimParams{Worker: "w", LeaseToken: 1, Limit: 1, Now: time.Now(), LeaseTTL: time.Minute}); err != nil || len(claimed.Steps) != 1 {
		t.Fatalf("claim: %+v, %v", claimed, err)
	}
	warmed, lazy := preparedOn(t, s)
	for i := range warmed {
		if len(warmed[i])+len(lazy[i]) != 0 {
			t.Errorf("connection %d has prepared statements: %v %v", i, warmed[i], lazy[i])
		}
	}
}

// A pool larger than a worker needs is not opened in full: Warm opens
// warmConns connections, and the others open when needed, prepared.
func TestWarmOpensAtMostWarmConns(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t)
	openWarmed(t, url, Options{Schema: pgtest.Schema(t, url), MaxConns: warmConns + 4}, warmConns)
}

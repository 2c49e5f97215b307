// Package bench holds Tasker's reusable performance scenarios. Each scenario
// drives the public root package API (tasker.Open, RegisterTemplate,
// CreateTask, Start, WaitTask, Stats) on the embedded SQLite store or on
// PostgreSQL, so it measures the product as users run it, and returns a
// Result that prints as a table row and marshals to JSON:
//
//   - BurnDown: N one-step "noop" tasks are inserted first, then a client is
//     started and the time until every task is complete is measured.
//   - Chain: one task of a linear chain of Steps "noop" steps, run Runs times
//     one after the other on a started client; the end-to-end latency of each
//     run and the overhead per step are reported.
//   - Diamond: BurnDown with N four-step diamond tasks (a → b, c → d).
//   - Fanout: BurnDown with tasks of a root, width parallel steps and a join.
//   - Big: tasks of 100 steps, then one of up to 10,000 steps of the same
//     shape: time per step of each.
//   - Steady: diamond tasks created at a fixed rate; creation and hand-off
//     latency percentiles.
//   - Compare: BurnDown on SQLite and on PostgreSQL in alternating pairs,
//     and the ratios of the pairs.
//
// `tasker bench` is the command-line front end; docs/performance.md has the
// commands, the figures measured so far and what limits them.
package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-go/tasker"
	"github.com/tasker-go/tasker/internal/engine"
)

// Defaults of Config.
const (
	DefaultN           = 1000
	DefaultChainSteps  = 40
	DefaultRuns        = 5
	DefaultConcurrency = 16
	DefaultInserters   = 8
	DefaultSynchronous = "FULL"
	// MaxContextBytes is the largest Config.ContextBytes, well within the
	// client's default cap on a task context (1 MiB).
	MaxContextBytes = 512 << 10
)

// Config configures a scenario. Zero fields take the defaults above.
type Config struct {
	// DB is the SQLite database file, or a PostgreSQL URL. Empty means a
	// fresh SQLite file in a new temporary directory, removed when the
	// scenario returns. A given file keeps the benchmark's template and
	// tasks afterwards, and must not hold unfinished tasks: the engine would
	// run them too and skew the figures. On PostgreSQL the scenario runs in
	// a fresh schema, dropped afterwards, unless Schema names one.
	DB string `json:"db,omitempty"`
	// Schema is the PostgreSQL schema to use and keep. Empty means a fresh
	// one, dropped when the scenario returns.
	Schema string `json:"schema,omitempty"`
	// N is the number of tasks of a burn-down. Default 1000.
	N int `json:"n,omitempty"`
	// Steps is the length of the chain. Default 40. Burn-down tasks have
	// one step and diamonds four, whatever Steps says.
	Steps int `json:"steps,omitempty"`
	// Runs is how many chain tasks are timed, one after the other, after
	// one untimed warm-up run. Default 5.
	Runs int `json:"runs,omitempty"`
	// Concurrency bounds the handlers running at once (tasker.Config's
	// Concurrency); the engine also claims at most this many steps per
	// claim. Default 16.
	Concurrency int `json:"concurrency"`
	// Prefetch is how many claimed steps may wait for a handler slot
	// beyond Concurrency (tasker.Config's Prefetch). Default Concurrency;
	// negative: none. The defaults applied, it is the number used.
	Prefetch int `json:"prefetch"`
	// Inserters is the number of goroutines that create the tasks of a
	// burn-down, so that the store's group commit can batch them.
	// Default 8.
	Inserters int `json:"inserters,omitempty"`
	// ContextBytes pads the context of every task of a burn-down, diamond
	// or fanout scenario with a string of this many bytes ({"pad":"…"}), for
	// the cost of realistic task inputs. Default 0: the context is {}.
	ContextBytes int `json:"context_bytes,omitempty"`
	// Rate is the steady scenario's task creation rate, per second.
	// Default 100.
	Rate float64 `json:"rate,omitempty"`
	// Duration is how long the steady scenario creates tasks. Default 10s.
	Duration time.Duration `json:"duration_ns,omitempty"`
	// Synchronous is SQLite's synchronous setting, "FULL" (the product's
	// default: every commit is on disk) or "NORMAL". Default "FULL". A
	// report of PostgreSQL runs alone leaves it out.
	Synchronous string `json:"synchronous,omitempty"`
	// SQLiteDriver is the SQLite build the SQLite runs use, "c" or "go"
	// (tasker.Config.SQLiteDriver). Default: the program's default. A
	// report of PostgreSQL runs alone leaves it out.
	SQLiteDriver string `json:"sqlite_driver,omitempty"`
	// Logger receives the client's logs. Default: discard.
	Logger *slog.Logger `json:"-"`
}

// withDefaults returns the configuration with its zero fields set to
// their defaults and Synchronous in upper case.
func (c Config) withDefaults() Config {
	if c.N == 0 {
		c.N = DefaultN
	}
	if c.Steps == 0 {
		c.Steps = DefaultChainSteps
	}
	if c.Runs == 0 {
		c.Runs = DefaultRuns
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	c.Prefetch = c.PrefetchUsed()
	if c.Inserters == 0 {
		c.Inserters = DefaultInserters
	}
	if c.Synchronous == "" {
		c.Synchronous = DefaultSynchronous
	}
	c.Synchronous = strings.ToUpper(c.Synchronous)
	c.SQLiteDriver = c.SQLiteDriverUsed()
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// validate reports every out-of-range field of a configuration with its
// defaults applied.
func (c Config) validate() error {
	var problems []string
	if c.N < 1 {
		problems = append(problems, fmt.Sprintf("n must be at least 1, not %d", c.N))
	}
	if c.Steps < 1 || c.Steps > 10000 {
		problems = append(problems, fmt.Sprintf("steps must be between 1 and 10000, not %d", c.Steps))
	}
	if c.Runs < 1 {
		problems = append(problems, fmt.Sprintf("runs must be at least 1, not %d", c.Runs))
	}
	if c.Concurrency < 1 {
		problems = append(problems, fmt.Sprintf("concurrency must be at least 1, not %d", c.Concurrency))
	}
	if c.Inserters < 1 {
		problems = append(problems, fmt.Sprintf("inserters must be at least 1, not %d", c.Inserters))
	}
	if c.ContextBytes < 0 || c.ContextBytes > MaxContextBytes {
		problems = append(problems, fmt.Sprintf("context bytes must be between 0 and %d, not %d", MaxContextBytes, c.ContextBytes))
	}
	if c.Synchronous != "FULL" && c.Synchronous != "NORMAL" {
		problems = append(problems, fmt.Sprintf("synchronous must be FULL or NORMAL, not %q", c.Synchronous))
	}
	if drivers := tasker.SQLiteDrivers(); !slices.Contains(drivers, c.SQLiteDriver) {
		problems = append(problems, fmt.Sprintf("SQLite driver must be %s, not %q (driver c needs a build with cgo)",
			strings.Join(drivers, " or "), c.SQLiteDriver))
	}
	if len(problems) > 0 {
		return fmt.Errorf("bench: %s", strings.Join(problems, "; "))
	}
	return nil
}

// prepare applies the defaults and validates.
func (c Config) prepare() (Config, error) {
	c = c.withDefaults()
	return c, c.validate()
}

// open opens a client on the configured database, or on a fresh temporary
// one. cleanup closes the client and removes the temporary database; call
// it exactly once.
func open(ctx context.Context, cfg Config) (c *tasker.Client, cleanup func() error, err error) {
	return openWith(ctx, cfg, nil)
}

// openWith is open with handlers besides the built-in ones.
func openWith(ctx context.Context, cfg Config, handlers map[string]tasker.Handler) (c *tasker.Client, cleanup func() error, err error) {
	if tasker.IsPostgresURL(cfg.DB) {
		return openPostgres(ctx, cfg, handlers)
	}
	path, dir := cfg.DB, ""
	if path == "" {
		dir, err = os.MkdirTemp("", "tasker-bench-")
		if err != nil {
			return nil, nil, fmt.Errorf("bench: temporary database: %w", err)
		}
		path = filepath.Join(dir, "bench.db")
	}
	removeDir := func() error {
		if dir == "" {
			return nil
		}
		return os.RemoveAll(dir)
	}
	c, err = tasker.Open(ctx, tasker.Config{
		Database:              path,
		DisableCommandHandler: true,
		Concurrency:           cfg.Concurrency,
		Prefetch:              clientPrefetch(cfg.Prefetch),
		SQLiteSynchronous:     cfg.Synchronous,
		SQLiteDriver:          cfg.SQLiteDriver,
		Logger:                cfg.Logger,
		Handlers:              handlers,
	})
	if err != nil {
		return nil, nil, errors.Join(fmt.Errorf("bench: %w", err), removeDir())
	}
	cleanup = func() error { return errors.Join(c.Close(), removeDir()) }
	if err := checkIdle(ctx, c); err != nil {
		return nil, nil, errors.Join(err, cleanup())
	}
	return c, cleanup, nil
}

// openPostgres opens a client on the PostgreSQL database of cfg.DB, in
// cfg.Schema or in a fresh schema dropped by cleanup.
func openPostgres(ctx context.Context, cfg Config, handlers map[string]tasker.Handler) (*tasker.Client, func() error, error) {
	schema, drop := cfg.Schema, func() error { return nil }
	if schema == "" {
		schema = fmt.Sprintf("bench_%d_%d", os.Getpid(), time.Now().UnixNano()%1e9)
		drop = func() error {
			conn, err := pgx.Connect(context.WithoutCancel(ctx), cfg.DB)
			if err != nil {
				return fmt.Errorf("bench: drop schema %s: %w", schema, err)
			}
			defer conn.Close(context.WithoutCancel(ctx))
			if _, err := conn.Exec(context.WithoutCancel(ctx), "DROP SCHEMA IF EXISTS "+schema+" CASCADE"); err != nil {
				return fmt.Errorf("bench: drop schema %s: %w", schema, err)
			}
			return nil
		}
	}
	c, err := tasker.Open(ctx, tasker.Config{
		Database:              cfg.DB,
		Schema:                schema,
		DisableCommandHandler: true,
		Concurrency:           cfg.Concurrency,
		Prefetch:              clientPrefetch(cfg.Prefetch),
		MaxConns:              max(4, cfg.Concurrency/2),
		Logger:                cfg.Logger,
		Handlers:              handlers,
	})
	if err != nil {
		return nil, nil, errors.Join(fmt.Errorf("bench: %w", err), drop())
	}
	cleanup := func() error { return errors.Join(c.Close(), drop()) }
	if err := checkIdle(ctx, c); err != nil {
		return nil, nil, errors.Join(err, cleanup())
	}
	return c, cleanup, nil
}

// checkIdle refuses a database with unfinished tasks: the engine would run
// them alongside the benchmark's and the figures would mean nothing.
func checkIdle(ctx context.Context, c *tasker.Client) error {
	for _, st := range []tasker.TaskState{tasker.TaskPending, tasker.TaskInProgress} {
		ts, err := c.Tasks(ctx, &tasker.TaskListOpts{State: st, Limit: 1})
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		if len(ts) > 0 {
			return fmt.Errorf("bench: database %s has unfinished tasks (%s, e.g. %s); use a fresh database file or none (a temporary one)",
				c.Database(), st, ts[0].ID)
		}
	}
	return nil
}

// register parses and registers a generated template.
func register(ctx context.Context, c *tasker.Client, yaml string) (*tasker.Template, error) {
	t, err := tasker.ParseTemplate("bench.yaml", []byte(yaml), nil)
	if err != nil {
		return nil, fmt.Errorf("bench: template: %w", err)
	}
	if err := c.RegisterTemplate(ctx, t); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	return t, nil
}

// oneStepTemplate is the template of BurnDown.
const oneStepTemplate = `namespace: bench
name: burn_down
version: 1.0.0
description: One noop step (tasker bench burn-down)
steps:
  - name: work
    handler: noop
`

// diamondTemplate is the template of Diamond.
const diamondTemplate = `namespace: bench
name: diamond
version: 1.0.0
description: Four noop steps, a then b and c in parallel then d (tasker bench diamond)
steps:
  - name: a
    handler: noop
  - name: b
    handler: noop
    depends_on: [a]
  - name: c
    handler: noop
    depends_on: [a]
  - name: d
    handler: noop
    depends_on: [b, c]
`

// steadyTemplate is the template of Steady: the diamond, with a handler
// that notes when each step's handler starts and ends.
var steadyTemplate = strings.ReplaceAll(strings.Replace(diamondTemplate, "name: diamond", "name: steady", 1),
	"handler: noop", "handler: "+stampHandler)

// chainTemplate returns the template of a linear chain of n noop steps.
// Each length has its own name, so chains of different lengths do not
// replace one another in a kept database.
func chainTemplate(n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "namespace: bench\nname: chain_%d\nversion: 1.0.0\n", n)
	fmt.Fprintf(&b, "description: A linear chain of %d noop steps (tasker bench chain)\nsteps:\n", n)
	for i := range n {
		fmt.Fprintf(&b, "  - name: s%05d\n    handler: noop\n", i)
		if i > 0 {
			fmt.Fprintf(&b, "    depends_on: [s%05d]\n", i-1)
		}
	}
	return b.String()
}

// rate returns n per second over d, 0 for an empty duration.
func rate(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// clientPrefetch is tasker.Config.Prefetch for a number of steps to
// prefetch, where 0 means none.
func clientPrefetch(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// SQLiteDriverUsed is the SQLite driver of a configuration's SQLite runs,
// its default applied: SQLiteDriver in lower case, or the program's
// default when it is empty.
func (c Config) SQLiteDriverUsed() string {
	if c.SQLiteDriver == "" {
		return tasker.SQLiteDrivers()[0]
	}
	return strings.ToLower(c.SQLiteDriver)
}

// PrefetchUsed is the most steps a configuration prefetches, its defaults
// applied: Prefetch, the engine's default for 0, none for a negative one.
func (c Config) PrefetchUsed() int {
	switch {
	case c.Prefetch == 0:
		serial := !tasker.IsPostgresURL(c.DB)
		if c.Concurrency == 0 {
			return engine.DefaultPrefetch(DefaultConcurrency, serial)
		}
		return engine.DefaultPrefetch(c.Concurrency, serial)
	case c.Prefetch < 0:
		return 0
	}
	return c.Prefetch
}

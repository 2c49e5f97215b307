package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/tasker-go/tasker"
)

type workerFlags struct {
	concurrency    int
	prefetch       int
	leaseTTL       time.Duration
	sweepInterval  time.Duration
	pollInterval   time.Duration
	stopGrace      time.Duration
	retention      time.Duration
	workerID       string
	disableCommand bool
	maxConns       int
	secretEnv      []string
	secretDirs     []string
	httpAllow      []string
	metricsAddr    string
	subscriptions  string
}

// loadSubscriptions reads the --subscriptions file, before anything is
// opened, so that a bad file fails at once.
func loadSubscriptions(path string) ([]tasker.Webhook, error) {
	if path == "" {
		return nil, nil
	}
	subs, err := tasker.LoadSubscriptionsFile(path)
	if err != nil {
		return nil, exitWith(ExitUsage, err)
	}
	if subs == nil {
		subs = []tasker.Webhook{}
	}
	return subs, nil
}

// applySubscriptions records the server-level subscriptions of the file,
// when one was given.
func applySubscriptions(ctx context.Context, c *tasker.Client, subs []tasker.Webhook, path string, log *slog.Logger) error {
	if subs == nil {
		return nil
	}
	if err := c.SetServerSubscriptions(ctx, subs); err != nil {
		return exitWith(ExitUsage, err)
	}
	log.InfoContext(ctx, "webhook subscriptions loaded", slog.String("file", path), slog.Int("count", len(subs)))
	return nil
}

// addSubscriptionsFlag adds --subscriptions.
func addSubscriptionsFlag(cmd *cobra.Command, path *string) {
	cmd.Flags().StringVar(path, "subscriptions", "", "a webhook subscriptions file; it replaces the server-level subscriptions in the database (without it they are left as they are)")
}

func newWorkerCmd(e *env) *cobra.Command {
	var f workerFlags
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Run steps of every task in the database until stopped",
		Long: `Worker claims ready steps of any task in the database, runs their handlers
(the built-in command, http, noop and sleep) and records the outcomes, until it gets
SIGTERM or SIGINT. Start as many as you like on one PostgreSQL database, on as
many machines as you like: claims never overlap, and the steps of a worker that
dies are rescued by the others within --lease-ttl plus --sweep-interval.

On SIGTERM or SIGINT the worker stops claiming, lets running steps finish for
up to --stop-grace, then interrupts the rest and releases them for another
worker (the interrupted attempt is not counted). While the database is
unreachable the worker keeps retrying with backoff; it never exits on its own.`,
		Example: `  tasker worker --db postgres://tasker@db.internal/tasker
  tasker worker --db postgres://tasker@db.internal/tasker --concurrency 64 --lease-ttl 10s`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("log-level") {
				e.logLevel = "info"
			}
			var err error
			if f.prefetch, err = prefetchValue(cmd.Flags(), f.prefetch); err != nil {
				return exitWith(ExitUsage, err)
			}
			return runWorker(cmd.Context(), e, f)
		},
	}
	cmd.Flags().IntVar(&f.concurrency, "concurrency", 16, "maximum steps running at once in this worker")
	addPrefetchFlag(cmd.Flags(), &f.prefetch)
	cmd.Flags().DurationVar(&f.leaseTTL, "lease-ttl", 30*time.Second, "how long a claim holds a step without renewal (renewed every third of it)")
	cmd.Flags().DurationVar(&f.sweepInterval, "sweep-interval", 5*time.Second, "how often the maintenance leader rescues expired leases")
	cmd.Flags().DurationVar(&f.pollInterval, "poll-interval", time.Second, "fallback interval for looking for ready steps")
	cmd.Flags().DurationVar(&f.stopGrace, "stop-grace", 30*time.Second, "on SIGTERM, how long running steps may finish before they are released")
	cmd.Flags().DurationVar(&f.retention, "retention", 0, "delete tasks finished longer ago than this (0 keeps them)")
	cmd.Flags().StringVar(&f.workerID, "worker-id", "", "name of this worker in leases (default HOST/PID/RANDOM)")
	cmd.Flags().BoolVar(&f.disableCommand, "disable-command", false, "do not run the built-in command handler")
	cmd.Flags().IntVar(&f.maxConns, "max-conns", 0, "PostgreSQL connection pool size (default: the greater of 4 and the CPU count)")
	addStepAccessFlags(cmd, &f.secretEnv, &f.secretDirs, &f.httpAllow, "environment variables ${env:NAME} references may read, as patterns such as PAYMENTS_* (repeatable; default none)")
	cmd.Flags().StringVar(&f.metricsAddr, "metrics-addr", "", "serve /metrics, /health/live and /health/ready without authentication on this address, such as 127.0.0.1:9090 (default: off)")
	addSubscriptionsFlag(cmd, &f.subscriptions)
	return cmd
}

// openRetrying opens the client, retrying with backoff while the database
// is unreachable, until ctx is done.
func openRetrying(ctx context.Context, e *env, cfg tasker.Config, log *slog.Logger) (*tasker.Client, error) {
	delay := 250 * time.Millisecond
	for {
		c, err := e.open(ctx, cfg)
		if err == nil {
			return c, nil
		}
		if ctx.Err() != nil {
			return nil, exitWith(ExitInterrupted, nil)
		}
		if !errors.Is(err, tasker.ErrUnavailable) {
			return nil, err
		}
		log.WarnContext(ctx, "cannot open the database; retrying", slog.Any("error", err), slog.Duration("in", delay))
		select {
		case <-ctx.Done():
			return nil, exitWith(ExitInterrupted, nil)
		case <-time.After(delay):
		}
		delay = min(delay*2, 10*time.Second)
	}
}

func runWorker(ctx context.Context, e *env, f workerFlags) error {
	log, err := e.logger()
	if err != nil {
		return exitWith(ExitUsage, err)
	}
	subs, err := loadSubscriptions(f.subscriptions)
	if err != nil {
		return err
	}
	c, err := openRetrying(ctx, e, tasker.Config{Concurrency: f.concurrency, Prefetch: f.prefetch, LeaseTTL: f.leaseTTL, SweepInterval: f.sweepInterval,
		PollInterval: f.pollInterval, StopGrace: f.stopGrace, Retention: f.retention, WorkerID: f.workerID,
		DisableCommandHandler: f.disableCommand, MaxConns: f.maxConns, SecretEnv: f.secretEnv, SecretDirs: f.secretDirs, HTTPAllow: f.httpAllow}, log)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := applySubscriptions(ctx, c, subs, f.subscriptions, log); err != nil {
		return err
	}
	if f.metricsAddr != "" {
		stopMetrics, err := serveWorkerMetrics(ctx, c, log, f.metricsAddr)
		if err != nil {
			return exitWith(ExitUsage, err)
		}
		defer stopMetrics()
	}
	for {
		err := c.Start(ctx, nil)
		if err == nil {
			break
		}
		log.WarnContext(ctx, "worker: cannot start; retrying", slog.Any("error", err))
		select {
		case <-ctx.Done():
			return exitWith(ExitInterrupted, nil)
		case <-time.After(time.Second):
		}
	}
	log.InfoContext(ctx, "worker: running", slog.String("db", redact(e.db)), slog.Int("concurrency", f.concurrency))
	<-ctx.Done()
	log.Info("worker: stopping", slog.Duration("grace", f.stopGrace))
	stopCtx, cancel := context.WithTimeout(context.Background(), f.stopGrace+time.Minute)
	defer cancel()
	if err := c.Stop(stopCtx); err != nil {
		return exitWith(ExitUsage, fmt.Errorf("stop: %w", err))
	}
	s := c.Stats()
	log.Info("worker: stopped", slog.Int64("handler_runs", s.HandlerRuns), slog.Int64("completed", s.Completed),
		slog.Int64("released", s.Released))
	return nil
}

func newMigrateCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "migrate",
		Short: "Create or upgrade the database schema",
		Long: `Migrate applies the embedded schema migrations to the database given with
--db (and, for PostgreSQL, --schema), then prints the schema version. Every
command also migrates when it opens a database; run this to do it ahead of a
deployment. It is safe to run from several machines at once.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := e.open(cmd.Context(), tasker.Config{})
			if err != nil {
				return err
			}
			defer c.Close()
			v, err := c.SchemaVersion(cmd.Context())
			if err != nil {
				return exitWith(ExitUsage, err)
			}
			fmt.Fprintf(e.stdout, "%s: schema version %d\n", redact(e.db), v)
			return nil
		},
	}
}

// serveWorkerMetrics serves a worker's metrics and health on addr.
func serveWorkerMetrics(ctx context.Context, c *tasker.Client, log *slog.Logger, addr string) (func(), error) {
	reg, stopTelemetry, err := startTelemetry(ctx, c, log)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		stopTelemetry()
		return nil, fmt.Errorf("--metrics-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /health/live", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
	mux.HandleFunc("GET /health/ready", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if err := c.Ping(r.Context()); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"status":"unavailable"}` + "\n"))
			return
		}
		_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	log.InfoContext(ctx, "worker: serving metrics", slog.String("addr", ln.Addr().String()))
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
		stopTelemetry()
	}, nil
}

// addPrefetchFlag adds --prefetch, whose value prefetchValue turns into
// tasker.Config.Prefetch.
func addPrefetchFlag(fl *pflag.FlagSet, p *int) {
	fl.IntVar(p, "prefetch", 0, "most claimed steps that may wait for a slot beyond --concurrency while handlers are short (under 100ms), so that a freed slot starts its next step at once; within it, as many as the handlers get through in one claim's time; 0: none (default: twice --concurrency on PostgreSQL, eight times on SQLite)")
}

// prefetchValue is tasker.Config.Prefetch for the --prefetch flag: the
// engine's default when the flag is not given, none for 0.
func prefetchValue(fl *pflag.FlagSet, n int) (int, error) {
	switch {
	case !fl.Changed("prefetch"):
		return 0, nil
	case n < 0:
		return 0, fmt.Errorf("--prefetch must be 0 or more, not %d", n)
	case n == 0:
		return -1, nil
	}
	return n, nil
}

package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/tasker-go/tasker"
	"github.com/tasker-go/tasker/internal/api"
	"github.com/tasker-go/tasker/internal/auth"
	"github.com/tasker-go/tasker/internal/dashboard"
	"github.com/tasker-go/tasker/internal/telemetry"
)

type serveFlags struct {
	workerFlags
	addr          string
	noAuth        bool
	runSteps      bool
	enableCommand bool
	templates     []string
	maxBody       int64
	rateLimit     float64
	rateBurst     int
	shutdownGrace time.Duration
	jwtAlg        string
	jwtKey        string
	jwtIssuer     string
	jwtAudience   string
}

func newServeCmd(e *env) *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the REST API (and run steps, like a worker)",
		Long: `Serve runs Tasker as a service: the REST API under /v1 with its OpenAPI
document at /openapi.json, the event stream, health endpoints (/health/live,
/health/ready), Prometheus metrics (/metrics) and the web dashboard (/, sign in
with a token); and, unless --run-steps=false, a worker that runs steps with the
built-in handlers.

Authentication is on: requests need "Authorization: Bearer TOKEN" with a token
from "tasker token create" (or a JWT when --jwt-public-key is set). For local
development only, --insecure-no-auth lets every request act as an admin.

The built-in command handler runs programs on this machine; it is disabled in
serve unless --enable-command is given.

On SIGTERM or SIGINT the server stops accepting connections, ends the event
streams, waits for requests in flight (up to --shutdown-grace), then stops the
worker like "tasker worker" does. Traces go to an OTLP endpoint when the
standard OTEL_EXPORTER_OTLP_ENDPOINT (or ..._TRACES_ENDPOINT) variable is set.`,
		Example: `  tasker token create --role admin --name me      # once; prints the token
  tasker serve --addr :8080 --enable-command --template examples/templates/release.yaml
  tasker serve --db postgres://tasker@db.internal/tasker --addr :8080`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("log-format") {
				e.logFormat = "json"
			}
			if !cmd.Flags().Changed("log-level") {
				e.logLevel = "info"
			}
			var err error
			if f.prefetch, err = prefetchValue(cmd.Flags(), f.prefetch); err != nil {
				return exitWith(ExitUsage, err)
			}
			return runServe(cmd.Context(), e, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.addr, "addr", ":8080", "address to listen on")
	fl.BoolVar(&f.noAuth, "insecure-no-auth", false, "accept requests without a token, as an admin (local development only)")
	fl.BoolVar(&f.runSteps, "run-steps", true, "also run steps in this process, like tasker worker")
	fl.BoolVar(&f.enableCommand, "enable-command", false, "allow the built-in command handler, which runs programs on this machine")
	fl.StringSliceVar(&f.templates, "template", nil, "register this template file at start (repeatable)")
	fl.Int64Var(&f.maxBody, "max-body", 1<<20, "maximum request body in bytes")
	fl.Float64Var(&f.rateLimit, "rate-limit", 50, "sustained requests per second allowed per token")
	fl.IntVar(&f.rateBurst, "rate-burst", 100, "burst of requests allowed per token above the rate")
	fl.DurationVar(&f.shutdownGrace, "shutdown-grace", 30*time.Second, "on SIGTERM, how long requests in flight may finish")
	fl.StringVar(&f.jwtAlg, "jwt-alg", "RS256", "with --jwt-public-key: the one signing algorithm accepted: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512 or EdDSA")
	fl.StringVar(&f.jwtKey, "jwt-public-key", "", "also accept JWTs verified with this PEM public key (claims: sub, exp, role, namespace)")
	fl.StringVar(&f.jwtIssuer, "jwt-issuer", "", "with --jwt-public-key: required iss claim")
	fl.StringVar(&f.jwtAudience, "jwt-audience", "", "with --jwt-public-key: required aud claim")
	fl.IntVar(&f.concurrency, "concurrency", 16, "maximum steps running at once in this process")
	addPrefetchFlag(fl, &f.prefetch)
	fl.DurationVar(&f.leaseTTL, "lease-ttl", 30*time.Second, "how long a claim holds a step without renewal")
	fl.DurationVar(&f.sweepInterval, "sweep-interval", 5*time.Second, "how often the maintenance leader rescues expired leases")
	fl.DurationVar(&f.pollInterval, "poll-interval", time.Second, "fallback interval for looking for ready steps")
	fl.DurationVar(&f.stopGrace, "stop-grace", 30*time.Second, "on SIGTERM, how long running steps may finish before they are released")
	fl.DurationVar(&f.retention, "retention", 0, "delete tasks finished longer ago than this (0 keeps them)")
	fl.StringVar(&f.workerID, "worker-id", "", "name of this process in leases (default HOST/PID/RANDOM)")
	fl.IntVar(&f.maxConns, "max-conns", 0, "PostgreSQL connection pool size (default: the greater of 4 and the CPU count)")
	addStepAccessFlags(cmd, &f.secretEnv, &f.secretDirs, &f.httpAllow, "environment variables ${env:NAME} references may read, as patterns such as PAYMENTS_* (repeatable; default none)")
	addSubscriptionsFlag(cmd, &f.subscriptions)
	return cmd
}

func runServe(ctx context.Context, e *env, f serveFlags) error {
	log, err := e.logger()
	if err != nil {
		return exitWith(ExitUsage, err)
	}
	var jwtv *auth.JWTVerifier
	if f.jwtKey != "" {
		pem, err := os.ReadFile(f.jwtKey)
		if err != nil {
			return exitWith(ExitUsage, fmt.Errorf("--jwt-public-key: %w", err))
		}
		if jwtv, err = auth.NewJWTVerifier(auth.JWTConfig{Algorithm: f.jwtAlg, PublicKeyPEM: pem, Issuer: f.jwtIssuer, Audience: f.jwtAudience}); err != nil {
			return exitWith(ExitUsage, err)
		}
	}
	subs, err := loadSubscriptions(f.subscriptions)
	if err != nil {
		return err
	}
	c, err := openRetrying(ctx, e, tasker.Config{Concurrency: f.concurrency, Prefetch: f.prefetch, LeaseTTL: f.leaseTTL, SweepInterval: f.sweepInterval,
		PollInterval: f.pollInterval, StopGrace: f.stopGrace, Retention: f.retention, WorkerID: f.workerID,
		DisableCommandHandler: !f.enableCommand, MaxConns: f.maxConns, SecretEnv: f.secretEnv, SecretDirs: f.secretDirs, HTTPAllow: f.httpAllow}, log)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := applySubscriptions(ctx, c, subs, f.subscriptions, log); err != nil {
		return err
	}
	for _, path := range f.templates {
		t, err := c.LoadTemplateFile(ctx, path)
		if err != nil {
			return exitWith(ExitUsage, err)
		}
		log.InfoContext(ctx, "serve: template registered", slog.String("template", t.Key()), slog.String("file", path))
	}

	reg, stopTelemetry, err := startTelemetry(ctx, c, log)
	if err != nil {
		return exitWith(ExitUsage, err)
	}
	defer stopTelemetry()

	var authn *auth.Authenticator
	if f.noAuth {
		log.WarnContext(ctx, "serve: AUTHENTICATION IS DISABLED (--insecure-no-auth): every request acts as an admin; never do this outside local development")
	} else {
		authn = auth.NewAuthenticator(c, jwtv, nil)
	}
	srv, err := api.New(api.Config{Client: c, Auth: authn, DisableAuth: f.noAuth, Logger: log, MaxBodyBytes: f.maxBody,
		RateLimit: f.rateLimit, RateBurst: f.rateBurst, Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), Dashboard: dashboard.New()})
	if err != nil {
		return exitWith(ExitUsage, err)
	}
	if f.runSteps {
		if err := c.Start(ctx, nil); err != nil {
			return exitWith(ExitUsage, err)
		}
	}
	// Listen once the database is open, so /health/ready answers at once.
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		return exitWith(ExitUsage, fmt.Errorf("listen on %s: %w", f.addr, err))
	}
	defer ln.Close()
	hs := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- hs.Serve(ln) }()
	log.InfoContext(ctx, "serve: listening", slog.String("addr", ln.Addr().String()), slog.String("db", redact(e.db)),
		slog.Bool("run_steps", f.runSteps), slog.Bool("auth", !f.noAuth))
	fmt.Fprintf(e.stderr, "tasker: serving on http://%s\n", ln.Addr())

	select {
	case err := <-serveErr:
		return exitWith(ExitUsage, fmt.Errorf("serve: %w", err))
	case <-ctx.Done():
	}
	log.Info("serve: shutting down", slog.Duration("grace", f.shutdownGrace))
	srv.Close()
	sctx, cancel := context.WithTimeout(context.Background(), f.shutdownGrace)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		log.Warn("serve: shutdown", slog.Any("error", err))
	}
	stopCtx, cancelStop := context.WithTimeout(context.Background(), f.stopGrace+time.Minute)
	defer cancelStop()
	if err := c.Stop(stopCtx); err != nil {
		return exitWith(ExitUsage, fmt.Errorf("stop: %w", err))
	}
	log.Info("serve: stopped")
	return nil
}

// startTelemetry feeds Prometheus metrics, and OTLP traces when the OTEL_*
// variables configure an endpoint, from the client's events. stop flushes
// and ends them.
func startTelemetry(ctx context.Context, c *tasker.Client, log *slog.Logger) (*prometheus.Registry, func(), error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics, err := telemetry.NewMetrics(reg, c)
	if err != nil {
		return nil, nil, err
	}
	var bg sync.WaitGroup
	bgCtx, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	var subs []*tasker.Subscription
	msub := c.Subscribe(&tasker.SubscribeOpts{Names: metrics.EventNames(), Buffer: 1 << 14})
	subs = append(subs, msub)
	bg.Add(1)
	go func() { defer bg.Done(); metrics.Run(bgCtx, msub.Events()) }()
	tp, err := telemetry.NewTracerProvider(ctx, os.Getenv)
	if err != nil {
		stopBG()
		msub.Close()
		bg.Wait()
		return nil, nil, fmt.Errorf("tracing: %w", err)
	}
	if tp != nil {
		tracer := telemetry.NewTracer(tp, c).WithLogger(log)
		tsub := c.Subscribe(&tasker.SubscribeOpts{Names: tracer.EventNames(), Buffer: 1 << 14})
		subs = append(subs, tsub)
		bg.Add(1)
		go func() { defer bg.Done(); tracer.Run(bgCtx, tsub.Events()) }()
		log.InfoContext(ctx, "exporting traces over OTLP")
	}
	stop := func() {
		stopBG()
		for _, s := range subs {
			s.Close()
		}
		bg.Wait()
		if tp != nil {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = tp.Shutdown(sctx)
		}
	}
	return reg, stop, nil
}

// Package cli is the tasker command tree: run, resume, task, template and
// bench. cmd/tasker is a thin main around Main.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tasker-go/tasker"
	"github.com/tasker-go/tasker/internal/apiclient"
)

// Exit statuses.
const (
	// ExitOK: the command succeeded (for run and resume: the task is complete).
	ExitOK = 0
	// ExitTaskFailed: the task ended in error or was cancelled.
	ExitTaskFailed = 1
	// ExitUsage: bad input (flags, template, context) or an operational error.
	ExitUsage = 2
	// ExitInterrupted: stopped by a signal; the task can be resumed.
	ExitInterrupted = 130
)

// exitError carries an exit status through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

func exitWith(code int, err error) error { return &exitError{code: code, err: err} }

// env is what commands share: streams and global flags.
type env struct {
	stdout, stderr io.Writer
	db             string
	schema         string
	noListen       bool
	sqliteDriver   string
	server         string
	token          string
	logLevel       string
	logFormat      string
	getenv         func(string) string
}

func (e *env) logger() (*slog.Logger, error) {
	var level slog.Level
	switch strings.ToLower(e.logLevel) {
	case "debug":
		level = slog.LevelDebug
	case "info":
		level = slog.LevelInfo
	case "warn", "warning", "":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	default:
		return nil, fmt.Errorf("unknown --log-level %q (want debug, info, warn or error)", e.logLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(e.logFormat) {
	case "text", "":
		return slog.New(slog.NewTextHandler(e.stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(e.stderr, opts)), nil
	}
	return nil, fmt.Errorf("unknown --log-format %q (want text or json)", e.logFormat)
}

// open opens a client on the database of the global flags.
func (e *env) open(ctx context.Context, cfg tasker.Config) (*tasker.Client, error) {
	log, err := e.logger()
	if err != nil {
		return nil, exitWith(ExitUsage, err)
	}
	cfg.Database = e.db
	cfg.Schema = e.schema
	cfg.DisableListen = e.noListen
	cfg.SQLiteDriver = e.sqliteDriver
	cfg.Logger = log
	c, err := tasker.Open(ctx, cfg)
	if err != nil {
		return nil, exitWith(ExitUsage, err)
	}
	return c, nil
}

// Main runs the tasker command line and returns the exit status.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	e := &env{stdout: stdout, stderr: stderr, getenv: os.Getenv}
	root := newRoot(e)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	code := ExitUsage
	var xe *exitError
	if errors.As(err, &xe) {
		code, err = xe.code, xe.err
	}
	if err != nil {
		fmt.Fprintf(stderr, "tasker: %s\n", strings.TrimPrefix(err.Error(), "tasker: "))
	}
	return code
}

func newRoot(e *env) *cobra.Command {
	defaultDB := e.getenv("TASKER_DB")
	if defaultDB == "" {
		defaultDB = "tasker.db"
	}
	root := &cobra.Command{
		Use:   "tasker",
		Short: "A durable, declarative, event-driven workflow engine",
		Long: `Tasker runs workflows declared as YAML task templates: a DAG of steps with
retries, backoff and timeouts, recorded step by step in an audit trail.

By default it works on the embedded SQLite database ./tasker.db. Set --db (or
TASKER_DB) to another file, or to a PostgreSQL URL (postgres://...) to share
work between many worker processes on many machines.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	defaultSchema := e.getenv("TASKER_SCHEMA")
	if defaultSchema == "" {
		defaultSchema = "tasker"
	}
	root.PersistentFlags().StringVar(&e.db, "db", defaultDB, "SQLite database file or PostgreSQL URL (env TASKER_DB)")
	root.PersistentFlags().StringVar(&e.schema, "schema", defaultSchema, "PostgreSQL schema of Tasker's tables (env TASKER_SCHEMA)")
	root.PersistentFlags().StringVar(&e.server, "server", e.getenv("TASKER_SERVER"), "work against a running tasker serve at this URL instead of the database (task list|show|cancel|retry|resolve, step show|reset|resolve|cancel, template list; env TASKER_SERVER)")
	root.PersistentFlags().StringVar(&e.token, "token", "", "API token for --server (default: env TASKER_TOKEN)")
	root.PersistentFlags().StringVar(&e.sqliteDriver, "sqlite-driver", e.getenv("TASKER_SQLITE_DRIVER"),
		"SQLite build to run an SQLite database on: c (SQLite's C library, in builds with cgo) or go (in every build); default: "+
			tasker.SQLiteDrivers()[0]+" (env TASKER_SQLITE_DRIVER)")
	root.PersistentFlags().BoolVar(&e.noListen, "no-listen", false, "PostgreSQL: do not LISTEN for wake-ups, poll only (for poolers in transaction mode)")
	root.PersistentFlags().StringVar(&e.logLevel, "log-level", "warn", "log level: debug, info, warn or error (logs go to stderr)")
	root.PersistentFlags().StringVar(&e.logFormat, "log-format", "text", "log format: text or json")
	root.AddCommand(newRunCmd(e), newResumeCmd(e), newServeCmd(e), newWorkerCmd(e), newMigrateCmd(e), newStoreCmd(e),
		newTaskCmd(e), newStepCmd(e), newWebhookCmd(e), newDeliveryCmd(e), newTemplateCmd(e), newTokenCmd(e), newBenchCmd(e), newVersionCmd(e))
	return root
}

func newVersionCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintln(e.stdout, "tasker", tasker.Version)
			return nil
		},
	}
}

// redact hides the password of a database URL for display.
func redact(db string) string {
	u, err := url.Parse(db)
	if err != nil || u.User == nil {
		return db
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

// remote returns an API client when --server is set, nil otherwise.
func (e *env) remote() (*apiclient.Client, error) {
	if e.server == "" {
		return nil, nil
	}
	token := e.token
	if token == "" {
		token = e.getenv("TASKER_TOKEN")
	}
	c, err := apiclient.New(e.server, token)
	if err != nil {
		return nil, exitWith(ExitUsage, err)
	}
	return c, nil
}

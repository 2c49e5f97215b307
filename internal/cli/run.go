package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/tasker-go/tasker"
)

type runFlags struct {
	secretEnvs  []string
	secretDirs  []string
	httpAllow   []string
	webhookWait time.Duration
	context     string
	contextFile string
	jsonOut     bool
	environment string
	idemKey     string
	concurrency int
	stopGrace   time.Duration
}

func newRunCmd(e *env) *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run TEMPLATE",
		Short: "Create a task from a template file and run it to the end",
		Long: `Run validates TEMPLATE, stores it, creates a task with the given context and
runs it to a terminal state on the embedded database, showing live progress.

Exit status: 0 when the task completes, 1 when it ends in error or is
cancelled, 2 for bad input, 130 when interrupted (Ctrl-C): the task stays in
the database and "tasker resume TASK_ID" continues it.`,
		Example: `  tasker run examples/templates/diamond.yaml
  tasker run order.yaml --context '{"order_id": 42}'
  tasker run order.yaml --context-file order.json --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runTemplate(cmd.Context(), e, args[0], f)
		},
	}
	cmd.Flags().StringVar(&f.context, "context", "", "task context as JSON (default {})")
	cmd.Flags().StringVar(&f.contextFile, "context-file", "", "read the task context from this JSON file (- for stdin)")
	cmd.Flags().BoolVar(&f.jsonOut, "json", false, "print the final task document as JSON on stdout instead of progress")
	cmd.Flags().StringVar(&f.environment, "env", "", "apply the template's overrides for this environment")
	cmd.Flags().StringVar(&f.idemKey, "idempotency-key", "", "reuse the task an earlier request with this key created")
	cmd.Flags().IntVar(&f.concurrency, "concurrency", 16, "maximum steps running at once")
	cmd.Flags().DurationVar(&f.stopGrace, "stop-grace", 5*time.Second, "on Ctrl-C, how long running steps may finish before they are interrupted")
	addStepAccessFlags(cmd, &f.secretEnvs, &f.secretDirs, &f.httpAllow, "environment variables ${env:NAME} references may read, as patterns (repeatable; default all)")
	cmd.Flags().DurationVar(&f.webhookWait, "webhook-wait", 10*time.Second, "once the task has finished, how long to wait for its webhook deliveries (0: do not wait)")
	return cmd
}

func newResumeCmd(e *env) *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "resume TASK_ID",
		Short: "Continue an unfinished task from the database",
		Long: `Resume runs an unfinished task to a terminal state, for example after Ctrl-C or
a crash of "tasker run". Steps that completed are not run again; steps that
were running in a process that died are rescued and run again.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := e.open(ctx, tasker.Config{Concurrency: f.concurrency, StopGrace: f.stopGrace, SecretEnv: f.secretEnv(), SecretDirs: f.secretDirs, HTTPAllow: f.httpAllow})
			if err != nil {
				return err
			}
			defer c.Close()
			task, err := c.Task(ctx, args[0])
			if err != nil {
				return exitWith(ExitUsage, err)
			}
			return drive(ctx, e, c, task, f)
		},
	}
	cmd.Flags().BoolVar(&f.jsonOut, "json", false, "print the final task document as JSON on stdout instead of progress")
	cmd.Flags().IntVar(&f.concurrency, "concurrency", 16, "maximum steps running at once")
	cmd.Flags().DurationVar(&f.stopGrace, "stop-grace", 5*time.Second, "on Ctrl-C, how long running steps may finish before they are interrupted")
	addStepAccessFlags(cmd, &f.secretEnvs, &f.secretDirs, &f.httpAllow, "environment variables ${env:NAME} references may read, as patterns (repeatable; default all)")
	cmd.Flags().DurationVar(&f.webhookWait, "webhook-wait", 10*time.Second, "once the task has finished, how long to wait for its webhook deliveries (0: do not wait)")
	return cmd
}

// secretEnv is the environment a local run may read: everything unless
// --secret-env narrows it (the templates are the user's own).
func (f runFlags) secretEnv() []string {
	if len(f.secretEnvs) == 0 {
		return []string{"*"}
	}
	return f.secretEnvs
}

// addStepAccessFlags adds the flags that say what steps may reach: secrets
// and special network destinations.
func addStepAccessFlags(cmd *cobra.Command, env, dirs, allow *[]string, envHelp string) {
	cmd.Flags().StringSliceVar(env, "secret-env", nil, envHelp)
	cmd.Flags().StringSliceVar(dirs, "secret-dir", nil, "directories whose files ${file:PATH} references may read (repeatable; default none)")
	cmd.Flags().StringSliceVar(allow, "http-allow", nil, "host names, IPs and CIDR ranges the http handler may reach although loopback, private or otherwise special, such as 127.0.0.1 or 10.20.0.0/16 (repeatable; default none)")
}

func readContext(f runFlags) (json.RawMessage, error) {
	switch {
	case f.context != "" && f.contextFile != "":
		return nil, errors.New("use --context or --context-file, not both")
	case f.context != "":
		return json.RawMessage(f.context), nil
	case f.contextFile == "-":
		b, err := io.ReadAll(os.Stdin)
		if err != nil {
			return nil, fmt.Errorf("read context from stdin: %w", err)
		}
		return b, nil
	case f.contextFile != "":
		b, err := os.ReadFile(f.contextFile)
		if err != nil {
			return nil, fmt.Errorf("read context: %w", err)
		}
		return b, nil
	}
	return nil, nil
}

func runTemplate(ctx context.Context, e *env, path string, f runFlags) error {
	taskCtx, err := readContext(f)
	if err != nil {
		return exitWith(ExitUsage, err)
	}
	c, err := e.open(ctx, tasker.Config{Environment: f.environment, Concurrency: f.concurrency, StopGrace: f.stopGrace,
		SecretEnv: f.secretEnv(), SecretDirs: f.secretDirs, HTTPAllow: f.httpAllow})
	if err != nil {
		return err
	}
	defer c.Close()
	tmpl, err := c.LoadTemplateFile(ctx, path)
	if err != nil {
		return exitWith(ExitUsage, err)
	}
	created, err := c.CreateTask(ctx, tasker.TaskRequest{Namespace: tmpl.Namespace, Name: tmpl.Name, Version: tmpl.Version,
		Context: taskCtx, IdempotencyKey: f.idemKey})
	if err != nil {
		return exitWith(ExitUsage, err)
	}
	if !created.Created {
		fmt.Fprintf(e.stderr, "tasker: the same request already created task %s (state %s); following it\n", created.Task.ID, created.Task.State)
	}
	return drive(ctx, e, c, created.Task, f)
}

// drive runs one task to a terminal state and reports it.
func drive(ctx context.Context, e *env, c *tasker.Client, task *tasker.Task, f runFlags) error {
	fmt.Fprintf(e.stderr, "tasker: task %s (%s/%s@%s) in %s\n", task.ID, task.Namespace, task.Name, task.Version, redact(e.db))
	if !task.Finished() {
		if missing := missingHandlers(c, task); len(missing) > 0 {
			return exitWith(ExitUsage, fmt.Errorf("task %s needs handlers this program does not have: %s; run it from the program that registers them",
				task.ID, strings.Join(missing, ", ")))
		}
		var rep reporter
		switch {
		case f.jsonOut:
			rep = quietReporter{}
		case isTerminal(e.stdout):
			rep = newLiveView(e.stdout, c, task.ID)
		default:
			rep = newLineLog(e.stdout, c, task.ID)
		}
		rep.start(ctx)
		err := c.Start(ctx, &tasker.StartOpts{TaskIDs: []string{task.ID}})
		if err != nil {
			rep.stop()
			return exitWith(ExitUsage, err)
		}
		_, waitErr := c.WaitTask(ctx, task.ID)
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.stopGrace+30*time.Second)
		stopErr := c.Stop(stopCtx)
		cancel()
		rep.stop()
		if waitErr != nil {
			if ctx.Err() != nil {
				fmt.Fprintf(e.stderr, "tasker: interrupted; task %s is unfinished. Continue it with:\n  tasker resume %s --db %s\n", task.ID, task.ID, redact(e.db))
				return exitWith(ExitInterrupted, nil)
			}
			return exitWith(ExitUsage, waitErr)
		}
		if stopErr != nil {
			return exitWith(ExitUsage, stopErr)
		}
		flushWebhooks(ctx, e, c, task.ID, f.webhookWait)
	}
	final, err := c.Task(context.WithoutCancel(ctx), task.ID)
	if err != nil {
		return exitWith(ExitUsage, err)
	}
	if f.jsonOut {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(final); err != nil {
			return exitWith(ExitUsage, err)
		}
	} else {
		printSummary(e.stdout, final, time.Now())
	}
	if final.State != tasker.TaskComplete {
		return exitWith(ExitTaskFailed, nil)
	}
	return nil
}

// flushWebhooks sends the task's webhook deliveries before the process
// exits, waiting at most wait, and reports them on stderr.
func flushWebhooks(ctx context.Context, e *env, c *tasker.Client, taskID string, wait time.Duration) {
	if wait <= 0 || ctx.Err() != nil {
		return
	}
	fctx, cancel := context.WithTimeout(ctx, wait)
	_, err := c.FlushDeliveries(fctx, taskID)
	cancel()
	if err != nil && fctx.Err() == nil {
		fmt.Fprintf(e.stderr, "tasker: webhooks: %v\n", err)
	}
	all, err := c.Deliveries(context.WithoutCancel(ctx), &tasker.DeliveryListOpts{TaskID: taskID, Limit: 1000})
	if err != nil || len(all) == 0 {
		return
	}
	n := map[string]int{}
	for _, d := range all {
		n[d.State]++
	}
	fmt.Fprintf(e.stderr, "tasker: webhooks: %d delivered, %d failed, %d pending\n",
		n[tasker.DeliveryDelivered], n[tasker.DeliveryFailed], n[tasker.DeliveryPending])
	if n[tasker.DeliveryPending] > 0 {
		fmt.Fprintf(e.stderr, "tasker: the pending deliveries are sent by the next tasker process on %s (serve, worker, run or resume); see: tasker delivery list --task %s\n",
			redact(e.db), taskID)
	}
}

// missingHandlers lists the handlers of the task's unfinished steps that
// this client cannot run.
func missingHandlers(c *tasker.Client, task *tasker.Task) []string {
	have := map[string]bool{}
	for _, h := range c.HandlerNames() {
		have[h] = true
	}
	var missing []string
	for _, s := range task.Steps {
		if !s.State.Terminal() && !have[s.Handler] && !slices.Contains(missing, s.Handler) {
			missing = append(missing, s.Handler)
		}
	}
	return missing
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

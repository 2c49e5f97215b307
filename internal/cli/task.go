package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tasker-go/tasker"
)

func newTaskCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "task",
		Short: "Create, list, show, cancel, retry and resolve tasks",
	}
	cmd.AddCommand(newTaskCreateCmd(e), newTaskListCmd(e), newTaskShowCmd(e), newTaskCancelCmd(e), newTaskRetryCmd(e), newTaskResolveCmd(e))
	return cmd
}

func newTaskCreateCmd(e *env) *cobra.Command {
	var (
		f       runFlags
		jsonOut bool
	)
	cmd := &cobra.Command{
		Use:   "create TEMPLATE",
		Short: "Register a template file and create a task from it, without running it",
		Long: `Create validates TEMPLATE, stores it, and creates a task with the given context,
then prints its id. Workers ("tasker worker") run it; "tasker resume" runs it
in this terminal. A duplicate request (same idempotency key, or same context
with identity_strategy hash) prints the existing task's id.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			taskCtx, err := readContext(f)
			if err != nil {
				return exitWith(ExitUsage, err)
			}
			c, err := e.open(ctx, tasker.Config{Environment: f.environment})
			if err != nil {
				return err
			}
			defer c.Close()
			tmpl, err := c.LoadTemplateFile(ctx, args[0])
			if err != nil {
				return exitWith(ExitUsage, err)
			}
			created, err := c.CreateTask(ctx, tasker.TaskRequest{Namespace: tmpl.Namespace, Name: tmpl.Name, Version: tmpl.Version,
				Context: taskCtx, IdempotencyKey: f.idemKey})
			if err != nil {
				return exitWith(ExitUsage, err)
			}
			if jsonOut {
				return writeJSON(e.stdout, map[string]any{"task": created.Task, "created": created.Created})
			}
			fmt.Fprintln(e.stdout, created.Task.ID)
			if !created.Created {
				fmt.Fprintf(e.stderr, "tasker: the same request already created task %s (state %s)\n", created.Task.ID, created.Task.State)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&f.context, "context", "", "task context as JSON (default {})")
	cmd.Flags().StringVar(&f.contextFile, "context-file", "", "read the task context from this JSON file (- for stdin)")
	cmd.Flags().StringVar(&f.environment, "env", "", "apply the template's overrides for this environment")
	cmd.Flags().StringVar(&f.idemKey, "idempotency-key", "", "return the task an earlier request with this key created")
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print the created task as JSON")
	return cmd
}

func newTaskListCmd(e *env) *cobra.Command {
	var (
		state   string
		limit   int
		jsonOut bool
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List tasks, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			var tasks []*tasker.Task
			if rc, err := e.remote(); err != nil {
				return err
			} else if rc != nil {
				page, err := rc.ListTasks(ctx, state, limit, "")
				if err != nil {
					return exitWith(ExitUsage, err)
				}
				tasks = page.Tasks
			} else {
				c, err := e.open(ctx, tasker.Config{})
				if err != nil {
					return err
				}
				defer c.Close()
				if tasks, err = c.Tasks(ctx, &tasker.TaskListOpts{State: tasker.TaskState(state), Limit: limit}); err != nil {
					return exitWith(ExitUsage, err)
				}
			}
			if jsonOut {
				return writeJSON(e.stdout, map[string]any{"tasks": nonNil(tasks)})
			}
			if len(tasks) == 0 {
				fmt.Fprintln(e.stdout, "no tasks")
				return nil
			}
			tw := tabwriter.NewWriter(e.stdout, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tTEMPLATE\tSTATE\tSTEPS\tCREATED")
			for _, t := range tasks {
				fmt.Fprintf(tw, "%s\t%s/%s@%s\t%s\t%d/%d\t%s\n", t.ID, t.Namespace, t.Name, t.Version, t.State,
					t.StepsDone, t.StepsTotal, t.CreatedAt.Local().Format(time.DateTime))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&state, "state", "", "only tasks in this state (pending, in_progress, complete, error, cancelled, resolved_manually)")
	cmd.Flags().IntVar(&limit, "limit", 50, "maximum number of tasks")
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print JSON")
	return cmd
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newTaskShowCmd(e *env) *cobra.Command {
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "show TASK_ID",
		Short: "Show a task, its steps and its transition history",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			var (
				task    *tasker.Task
				history []*tasker.Transition
			)
			if rc, err := e.remote(); err != nil {
				return err
			} else if rc != nil {
				if task, err = rc.Task(ctx, args[0]); err != nil {
					return exitWith(ExitUsage, err)
				}
				if history, err = rc.Transitions(ctx, args[0]); err != nil {
					return exitWith(ExitUsage, err)
				}
			} else {
				c, err := e.open(ctx, tasker.Config{})
				if err != nil {
					return err
				}
				defer c.Close()
				if task, err = c.Task(ctx, args[0]); err != nil {
					return exitWith(ExitUsage, err)
				}
				if history, err = c.Transitions(ctx, args[0]); err != nil {
					return exitWith(ExitUsage, err)
				}
			}
			if jsonOut {
				return writeJSON(e.stdout, map[string]any{"task": task, "transitions": nonNil(history)})
			}
			printSummary(e.stdout, task, time.Now())
			fmt.Fprintln(e.stdout)
			printHistory(e.stdout, history)
			return nil
		},
	}
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print JSON: the task with its steps, and its transitions")
	return cmd
}

func printHistory(w io.Writer, history []*tasker.Transition) {
	fmt.Fprintln(w, "transitions:")
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  TIME\tENTITY\tFROM → TO\tEVENT\tDETAILS")
	for _, tr := range history {
		who := "task"
		if tr.StepName != "" {
			who = tr.StepName
		}
		from := tr.From
		if from == "" {
			from = "(new)"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s → %s\t%s\t%s\n", tr.OccurredAt.Local().Format("15:04:05.000"), who, from, tr.To, tr.Event, details(tr.Metadata))
	}
	tw.Flush()
}

func details(m tasker.TransitionMetadata) string {
	var parts []string
	if m.Attempt > 0 {
		parts = append(parts, fmt.Sprintf("attempt %d/%d", m.Attempt, m.RetryLimit))
	}
	if m.Worker != "" {
		parts = append(parts, "worker "+m.Worker)
	}
	if m.DurationMS > 0 {
		parts = append(parts, fmt.Sprintf("took %s", time.Duration(m.DurationMS)*time.Millisecond))
	}
	if !m.NextAttemptAt.IsZero() {
		parts = append(parts, "retry at "+m.NextAttemptAt.Local().Format("15:04:05.000"))
	}
	if m.Reason != "" {
		parts = append(parts, "reason: "+m.Reason)
	}
	if m.Error != "" {
		msg := firstLine(m.Error)
		if len(msg) > 80 {
			msg = msg[:80] + "…"
		}
		parts = append(parts, fmt.Sprintf("%s: %s", m.ErrorClass, msg))
	}
	return strings.Join(parts, "; ")
}

func newTaskCancelCmd(e *env) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "cancel TASK_ID",
		Short: "Cancel a pending or running task and its unfinished steps",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			var task *tasker.Task
			if rc, err := e.remote(); err != nil {
				return err
			} else if rc != nil {
				if task, err = rc.CancelTask(ctx, args[0], reason); err != nil {
					return exitWith(ExitUsage, err)
				}
			} else {
				c, err := e.open(ctx, tasker.Config{})
				if err != nil {
					return err
				}
				defer c.Close()
				if task, err = c.CancelTask(tasker.WithActor(ctx, "command line"), args[0], reason); err != nil {
					return exitWith(ExitUsage, err)
				}
			}
			fmt.Fprintf(e.stdout, "task %s is %s\n", task.ID, task.State)
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "cancelled from the command line", "why, recorded in the audit trail")
	return cmd
}

func newTaskResolveCmd(e *env) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "resolve TASK_ID --reason TEXT",
		Short: "Close a task in error as resolved by hand, without running it again",
		Long: `Resolve closes a task in error as resolved_manually: an operator has dealt
with its failure outside the engine. Its steps are left as they are, and the
reason is recorded in the audit trail.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if strings.TrimSpace(reason) == "" {
				return exitWith(ExitUsage, fmt.Errorf("--reason is required: say why the task needs no more work"))
			}
			var task *tasker.Task
			if rc, err := e.remote(); err != nil {
				return err
			} else if rc != nil {
				if task, err = rc.ResolveTask(ctx, args[0], reason); err != nil {
					return exitWith(ExitUsage, err)
				}
			} else {
				c, err := e.open(ctx, tasker.Config{})
				if err != nil {
					return err
				}
				defer c.Close()
				if task, err = c.ResolveTask(tasker.WithActor(ctx, "command line"), args[0], reason); err != nil {
					return exitWith(ExitUsage, err)
				}
			}
			fmt.Fprintf(e.stdout, "task %s is %s\n", task.ID, task.State)
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, recorded in the audit trail (required)")
	return cmd
}

func newTaskRetryCmd(e *env) *cobra.Command {
	var (
		reason string
		run    bool
		f      runFlags
	)
	cmd := &cobra.Command{
		Use:   "retry TASK_ID",
		Short: "Reset the failed steps of a task in error, with a fresh retry budget",
		Long: `Retry moves a task in error back to in_progress and resets its failed steps,
each with a fresh retry budget. With --run it then runs the task to the end
in this process, like "tasker resume".`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if rc, err := e.remote(); err != nil {
				return err
			} else if rc != nil {
				if run {
					return exitWith(ExitUsage, fmt.Errorf("--run works on a database, not with --server"))
				}
				task, err := rc.RetryTask(ctx, args[0], reason)
				if err != nil {
					return exitWith(ExitUsage, err)
				}
				fmt.Fprintf(e.stdout, "task %s is %s\n", task.ID, task.State)
				return nil
			}
			c, err := e.open(ctx, tasker.Config{StopGrace: f.stopGrace, SecretEnv: f.secretEnv(), SecretDirs: f.secretDirs, HTTPAllow: f.httpAllow})
			if err != nil {
				return err
			}
			defer c.Close()
			task, err := c.RetryTask(tasker.WithActor(ctx, "command line"), args[0], reason)
			if err != nil {
				return exitWith(ExitUsage, err)
			}
			if run {
				return drive(ctx, e, c, task, f)
			}
			fmt.Fprintf(e.stdout, "task %s is %s; run it with: tasker resume %s\n", task.ID, task.State, task.ID)
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "retried from the command line", "why, recorded in the audit trail")
	cmd.Flags().BoolVar(&run, "run", false, "run the task to the end after resetting it")
	cmd.Flags().BoolVar(&f.jsonOut, "json", false, "with --run, print the final task document as JSON")
	addStepAccessFlags(cmd, &f.secretEnvs, &f.secretDirs, &f.httpAllow, "with --run: environment variables ${env:NAME} references may read (default all)")
	f.stopGrace = 5 * time.Second
	f.webhookWait = 10 * time.Second
	return cmd
}

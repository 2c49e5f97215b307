package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tasker-go/tasker"
)

func newStepCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "step",
		Short: "Show, reset, resolve and cancel single steps",
	}
	cmd.AddCommand(newStepShowCmd(e),
		newStepActionCmd(e, "reset", "Give a failed step a fresh retry budget and run it again",
			`Reset moves a step in error back to pending with a fresh retry budget. Its task
goes back to in_progress; a running worker, "tasker resume" or "tasker serve"
picks it up.`, false),
		newStepActionCmd(e, "resolve", "Mark a failed step as done by hand, so its dependents can run",
			`Resolve marks a step in error as resolved_manually: an operator did its work
outside the engine. Steps that depend on it become ready, and the reason is
recorded in the audit trail.`, true),
		newStepActionCmd(e, "cancel", "Cancel a step that has not finished",
			`Cancel stops a pending, running or waiting step. A running handler is
interrupted through its context; the task finishes once nothing else can run.`, false))
	return cmd
}

func newStepShowCmd(e *env) *cobra.Command {
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "show STEP_ID",
		Short: "Show a step, its result or last error, and its transitions",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			var (
				st      *tasker.StepDetail
				history []*tasker.Transition
			)
			if rc, err := e.remote(); err != nil {
				return err
			} else if rc != nil {
				if st, err = rc.Step(ctx, args[0]); err != nil {
					return exitWith(ExitUsage, err)
				}
				all, err := rc.Transitions(ctx, st.TaskID)
				if err != nil {
					return exitWith(ExitUsage, err)
				}
				for _, tr := range all {
					if tr.StepID == st.ID {
						history = append(history, tr)
					}
				}
			} else {
				c, err := e.open(ctx, tasker.Config{})
				if err != nil {
					return err
				}
				defer c.Close()
				if st, err = c.Step(ctx, args[0]); err != nil {
					return exitWith(ExitUsage, err)
				}
				if history, err = c.StepTransitions(ctx, st.ID); err != nil {
					return exitWith(ExitUsage, err)
				}
			}
			if jsonOut {
				return writeJSON(e.stdout, map[string]any{"step": st, "transitions": nonNil(history)})
			}
			w := e.stdout
			fmt.Fprintf(w, "step %s  %s  (%s)\n", st.Name, st.State, st.ID)
			fmt.Fprintf(w, "task %s  %s/%s@%s\n", st.TaskID, st.Namespace, st.TaskName, st.Version)
			fmt.Fprintf(w, "handler %s, attempt %d of %d\n", st.Handler, st.Attempts, st.RetryLimit)
			if !st.NextAttemptAt.IsZero() {
				fmt.Fprintf(w, "next attempt at %s\n", st.NextAttemptAt.Local().Format(time.RFC3339))
			}
			if st.LeaseOwner != "" {
				fmt.Fprintf(w, "held by %s until %s\n", st.LeaseOwner, st.LeaseExpiresAt.Local().Format(time.RFC3339))
			}
			if len(st.Results) > 0 {
				fmt.Fprintf(w, "results: %s\n", st.Results)
			}
			if st.LastError != "" {
				fmt.Fprintf(w, "last error (%s): %s\n", st.ErrorClass, st.LastError)
			}
			fmt.Fprintln(w)
			printHistory(w, history)
			return nil
		},
	}
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print JSON: the step and its transitions")
	return cmd
}

func newStepActionCmd(e *env, action, short, long string, reasonRequired bool) *cobra.Command {
	var reason string
	use := action + " STEP_ID"
	if reasonRequired {
		use += " --reason TEXT"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Long:  long,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if reasonRequired && strings.TrimSpace(reason) == "" {
				return exitWith(ExitUsage, fmt.Errorf("--reason is required: say what was done instead"))
			}
			var st *tasker.StepDetail
			if rc, err := e.remote(); err != nil {
				return err
			} else if rc != nil {
				if st, err = rc.StepAction(ctx, args[0], action, reason); err != nil {
					return exitWith(ExitUsage, err)
				}
			} else {
				c, err := e.open(ctx, tasker.Config{})
				if err != nil {
					return err
				}
				defer c.Close()
				act := map[string]func(context.Context, string, string) (*tasker.StepDetail, error){
					"reset": c.ResetStep, "resolve": c.ResolveStep, "cancel": c.CancelStep,
				}[action]
				if st, err = act(tasker.WithActor(ctx, "command line"), args[0], reason); err != nil {
					return exitWith(ExitUsage, err)
				}
			}
			fmt.Fprintf(e.stdout, "step %s of task %s is %s\n", st.Name, st.TaskID, st.State)
			return nil
		},
	}
	def := action + " from the command line"
	help := "why, recorded in the audit trail"
	if reasonRequired {
		def, help = "", help+" (required)"
	}
	cmd.Flags().StringVar(&reason, "reason", def, help)
	return cmd
}

package cli

import (
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/tasker-go/tasker"
	"github.com/tasker-go/tasker/internal/apiclient"
	"github.com/tasker-go/tasker/internal/builtin"
)

func newTemplateCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "template",
		Short: "Validate task templates and draw their DAG",
	}
	cmd.AddCommand(newTemplateListCmd(e), newTemplateValidateCmd(e), newTemplateGraphCmd(e))
	return cmd
}

func newTemplateValidateCmd(e *env) *cobra.Command {
	var (
		handlers    []string
		environment string
		anyHandler  bool
	)
	cmd := &cobra.Command{
		Use:   "validate FILE...",
		Short: "Check templates and report every problem with its file, line and step",
		Long: `Validate parses each template file and reports every problem it finds with the
file, line and step. Handler names are checked against the built-in handlers
(` + strings.Join(builtin.Names(), ", ") + `) and those given with --handler; use
--any-handler for templates whose Go handlers live in your own program.

Exit status: 0 when every file is valid, 2 otherwise.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts := &tasker.TemplateOpts{Environment: environment}
			if !anyHandler {
				opts.KnownHandlers = append(builtin.Names(), handlers...)
			}
			failed := 0
			for _, path := range args {
				t, err := tasker.ParseTemplateFile(path, opts)
				if err != nil {
					failed++
					fmt.Fprintf(e.stdout, "%s: invalid\n", path)
					var te *tasker.TemplateError
					if errors.As(err, &te) {
						for _, p := range te.Problems {
							fmt.Fprintf(e.stdout, "  %s\n", p.String())
						}
					} else {
						fmt.Fprintf(e.stdout, "  %v\n", err)
					}
					continue
				}
				fmt.Fprintf(e.stdout, "%s: ok (%s, %d steps)\n", path, t.Key(), len(t.Steps))
			}
			if failed > 0 {
				return exitWith(ExitUsage, fmt.Errorf("%d of %d templates are invalid", failed, len(args)))
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&handlers, "handler", nil, "also accept this handler name (repeatable)")
	cmd.Flags().BoolVar(&anyHandler, "any-handler", false, "do not check handler names")
	cmd.Flags().StringVar(&environment, "env", "", "validate with this environment's overrides applied")
	return cmd
}

func newTemplateGraphCmd(e *env) *cobra.Command {
	var environment string
	cmd := &cobra.Command{
		Use:   "graph FILE",
		Short: "Print a template's DAG as a Mermaid flowchart and its dependency levels",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := tasker.ParseTemplateFile(args[0], &tasker.TemplateOpts{Environment: environment})
			if err != nil {
				return exitWith(ExitUsage, err)
			}
			fmt.Fprintf(e.stdout, "%%%% %s: %d steps\n", t.Key(), len(t.Steps))
			fmt.Fprint(e.stdout, t.Mermaid())
			fmt.Fprintln(e.stdout)
			fmt.Fprintln(e.stdout, "dependency levels (steps of one level can run in parallel):")
			for _, line := range strings.Split(strings.TrimRight(t.LevelsText(), "\n"), "\n") {
				fmt.Fprintf(e.stdout, "  %s\n", line)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&environment, "env", "", "apply this environment's overrides")
	return cmd
}

func newTemplateListCmd(e *env) *cobra.Command {
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the templates registered in the database (or on --server)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			var list []apiclient.TemplateSummary
			if rc, err := e.remote(); err != nil {
				return err
			} else if rc != nil {
				if list, err = rc.Templates(ctx); err != nil {
					return exitWith(ExitUsage, err)
				}
			} else {
				c, err := e.open(ctx, tasker.Config{})
				if err != nil {
					return err
				}
				defer c.Close()
				tmpls, err := c.Templates(ctx)
				if err != nil {
					return exitWith(ExitUsage, err)
				}
				for _, t := range tmpls {
					list = append(list, apiclient.TemplateSummary{Namespace: t.Namespace, Name: t.Name, Version: t.Version,
						Description: t.Description, Steps: len(t.Steps)})
				}
			}
			if jsonOut {
				return writeJSON(e.stdout, map[string]any{"templates": nonNil(list)})
			}
			if len(list) == 0 {
				fmt.Fprintln(e.stdout, "no templates")
				return nil
			}
			tw := tabwriter.NewWriter(e.stdout, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TEMPLATE\tSTEPS\tDESCRIPTION")
			for _, t := range list {
				fmt.Fprintf(tw, "%s/%s@%s\t%d\t%s\n", t.Namespace, t.Name, t.Version, t.Steps, t.Description)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print JSON")
	return cmd
}

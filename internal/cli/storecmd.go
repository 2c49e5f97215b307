package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/tasker-go/tasker"
	"github.com/tasker-go/tasker/internal/store/postgres"
	"github.com/tasker-go/tasker/internal/store/sqlite"
	"github.com/tasker-go/tasker/internal/storecopy"
)

func newStoreCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "store",
		Short: "Move data between stores",
	}
	cmd.AddCommand(newStoreCopyCmd(e))
	return cmd
}

func newStoreCopyCmd(e *env) *cobra.Command {
	var from, to string
	cmd := &cobra.Command{
		Use:   "copy --from FILE.db --to postgres://...",
		Short: "Copy an embedded SQLite database into PostgreSQL",
		Long: `Copy moves a Tasker database from the embedded SQLite store to PostgreSQL:
templates, tasks, steps, their dependencies and the whole audit trail, with
the same ids and event cursors. Unfinished tasks then continue on PostgreSQL
with "tasker worker --db postgres://...".

It refuses to run while a worker uses the SQLite file (running steps with
unexpired leases), and into a PostgreSQL schema (--schema) that already holds
tasks. It holds the SQLite file's write lock while it copies, and the copy is
one PostgreSQL transaction: all or nothing.`,
		Example: `  tasker store copy --from tasker.db --to postgres://tasker@db.internal/tasker`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if from == "" || to == "" {
				return exitWith(ExitUsage, fmt.Errorf("--from and --to are required"))
			}
			if tasker.IsPostgresURL(from) || !tasker.IsPostgresURL(to) {
				return exitWith(ExitUsage, fmt.Errorf("--from must be an SQLite file and --to a postgres:// URL"))
			}
			log, err := e.logger()
			if err != nil {
				return exitWith(ExitUsage, err)
			}
			src, err := sqlite.Open(ctx, from, sqlite.Options{Logger: log, Driver: e.sqliteDriver})
			if err != nil {
				return exitWith(ExitUsage, err)
			}
			defer src.Close()
			dst, err := postgres.Open(ctx, to, postgres.Options{Schema: e.schema, Logger: log})
			if err != nil {
				return exitWith(ExitUsage, err)
			}
			defer dst.Close()
			started := time.Now()
			stats, err := storecopy.Copy(ctx, src, dst, time.Now())
			if err != nil {
				return exitWith(ExitUsage, err)
			}
			fmt.Fprintf(e.stdout, "copied %d templates, %d tasks (%d unfinished), %d steps, %d edges, %d events, %d tokens, %d webhooks and %d deliveries from %s to %s (schema %s) in %s\n",
				stats.Templates, stats.Tasks, stats.Unfinished, stats.Steps, stats.Edges, stats.Events, stats.Tokens, stats.Subscriptions, stats.Deliveries,
				from, redact(to), e.schema,
				time.Since(started).Round(time.Millisecond))
			if stats.Unfinished > 0 {
				fmt.Fprintf(e.stdout, "run the unfinished tasks with: tasker worker --db %s --schema %s\n", redact(to), e.schema)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "SQLite database file to copy")
	cmd.Flags().StringVar(&to, "to", "", "PostgreSQL URL to copy into (schema from --schema)")
	return cmd
}

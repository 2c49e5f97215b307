package cli

import (
	"github.com/spf13/cobra"
)

func newBenchCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure the engine: burn-down of single-step tasks, a linear chain",
	}
	return cmd
}

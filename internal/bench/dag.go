package bench

import (
	"context"
	"fmt"
	"io"
	"time"
)

// DAG runs the four DAG scenarios one after the other, each with its own
// defaults and the settings of cfg: cfg.N diamond tasks (Diamond), a
// 40-step chain (Chain), fan-outs 1 → 100 → 1 (Fanout) and one task of
// 10,000 steps against tasks of 100 (Big). A line on progress reports
// each scenario as it ends. If one fails, DAG returns the results of those
// that ended before it, and the error.
func DAG(ctx context.Context, cfg Config, progress io.Writer) ([]*Result, error) {
	shared := cfg
	shared.N, shared.Steps, shared.Runs = 0, 0, 0
	diamond := shared
	diamond.N = cfg.N
	runs := []struct {
		name     string
		cfg      Config
		scenario func(context.Context, Config) (*Result, error)
	}{
		{"diamond", diamond, Diamond},
		{"chain", shared, Chain},
		{"fanout", shared, Fanout},
		{"big", shared, Big},
	}
	var results []*Result
	for _, r := range runs {
		began := time.Now()
		res, err := r.scenario(ctx, r.cfg)
		if err != nil {
			return results, fmt.Errorf("bench: dag: %s: %w", r.name, err)
		}
		results = append(results, res)
		if progress != nil {
			fmt.Fprintf(progress, "tasker: bench dag: %s done in %s\n", r.name, fmtDuration(time.Since(began)))
		}
	}
	return results, nil
}

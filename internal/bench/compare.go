package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/tasker-go/tasker"
)

// Defaults of Compare.
const (
	// DefaultComparePairs is the number of pairs of burn-downs.
	DefaultComparePairs = 5
	// DefaultCompareN is the number of tasks of each burn-down.
	DefaultCompareN = 20000
	// MaxComparePairs bounds the pairs of one comparison.
	MaxComparePairs = 100
	// CompareTarget is the ratio the SQLite burn-down is meant to reach
	// against PostgreSQL's on the same machine (docs/performance.md).
	CompareTarget = 2.0
)

// Comparison is the outcome of Compare: the SQLite burn-down against the
// PostgreSQL one, pair by pair.
type Comparison struct {
	Pairs []ComparedPair `json:"pairs"`
	// Median, Min and Max summarize the pairs' ratios. With an even
	// number of pairs the median is the mean of the middle two.
	Median float64 `json:"median_ratio"`
	Min    float64 `json:"min_ratio"`
	Max    float64 `json:"max_ratio"`
	// Target is the ratio aimed at (CompareTarget).
	Target float64 `json:"target_ratio"`
}

// ComparedPair is one pair of burn-downs of a comparison.
type ComparedPair struct {
	// First is the store that ran first: "sqlite" or "postgres".
	First string `json:"first"`
	// SQLite and Postgres are the work phases' tasks/s.
	SQLite   float64 `json:"sqlite_tasks_per_sec"`
	Postgres float64 `json:"postgres_tasks_per_sec"`
	// Ratio is SQLite over Postgres.
	Ratio float64 `json:"ratio"`
}

// CompareConfig returns cfg with Compare's defaults applied (its N), or
// the reason Compare would refuse it and pairs, without running anything.
func CompareConfig(cfg Config, pairs int) (Config, error) {
	if !tasker.IsPostgresURL(cfg.DB) {
		return cfg, errors.New("bench: a comparison needs a PostgreSQL URL to compare SQLite with")
	}
	if cfg.Schema != "" {
		return cfg, errors.New("bench: a comparison runs each PostgreSQL burn-down in a fresh schema, " +
			"not in a given one (its tables would grow from run to run)")
	}
	if pairs < 1 || pairs > MaxComparePairs {
		return cfg, fmt.Errorf("bench: pairs must be between 1 and %d, not %d", MaxComparePairs, pairs)
	}
	if cfg.N == 0 {
		cfg.N = DefaultCompareN
	}
	for _, c := range []Config{sqliteHalf(cfg), cfg} {
		if _, err := c.prepare(); err != nil {
			return cfg, err
		}
	}
	return cfg, nil
}

// sqliteHalf is the configuration of a comparison's SQLite burn-downs.
func sqliteHalf(cfg Config) Config {
	cfg.DB, cfg.Schema = "", ""
	return cfg
}

// Compare runs burn-downs of cfg.N one-step tasks on a temporary SQLite
// database and on the PostgreSQL database of cfg.DB, pairs times, and
// returns every result (in the order they ran) and the ratios of the
// pairs. Each PostgreSQL burn-down runs in a fresh schema: cfg.Schema must
// be empty, since a kept schema would grow from one run to the next while
// every SQLite run starts empty (CompareConfig says what is refused).
//
// The order of the two stores alternates from one pair to the next, so
// that a machine whose speed drifts (a shared one moves by a third from
// one minute to the next) slows both alike: only ratios measured this
// way, side by side, mean anything there. progress, when not nil, gets a
// line per burn-down as it ends. On an error (a cancelled ctx among
// them) Compare returns the results measured so far and the comparison
// of the pairs completed (nil if none was), with the error.
func Compare(ctx context.Context, cfg Config, pairs int, progress io.Writer) ([]*Result, *Comparison, error) {
	cfg, err := CompareConfig(cfg, pairs)
	if err != nil {
		return nil, nil, err
	}
	lite := sqliteHalf(cfg)
	var results []*Result
	cmp := &Comparison{Target: CompareTarget}
	for i := range pairs {
		order := []Config{lite, cfg}
		if i%2 == 1 {
			order = []Config{cfg, lite}
		}
		var p ComparedPair
		for _, c := range order {
			r, err := BurnDown(ctx, c)
			if err != nil {
				return results, cmp.summarized(), fmt.Errorf("bench: pair %d, %s: %w", i+1, storeLabel(storeName(c)), err)
			}
			results = append(results, r)
			if p.First == "" {
				p.First = r.Store
			}
			if r.Store == "postgres" {
				p.Postgres = r.TasksPerSec
			} else {
				p.SQLite = r.TasksPerSec
			}
			if progress != nil {
				fmt.Fprintf(progress, "pair %d of %d: %s %s tasks/s\n", i+1, pairs, storeLabel(r.Store), fmtRate(r.TasksPerSec))
			}
		}
		if p.Postgres > 0 {
			p.Ratio = p.SQLite / p.Postgres
		}
		cmp.Pairs = append(cmp.Pairs, p)
	}
	return results, cmp.summarized(), nil
}

// summarized sets the median, smallest and largest ratio of c's pairs and
// returns c, or nil when c has no pairs.
func (c *Comparison) summarized() *Comparison {
	if len(c.Pairs) == 0 {
		return nil
	}
	ratios := make([]float64, len(c.Pairs))
	for i, p := range c.Pairs {
		ratios[i] = p.Ratio
	}
	slices.Sort(ratios)
	c.Min, c.Max = ratios[0], ratios[len(ratios)-1]
	if n := len(ratios); n%2 == 1 {
		c.Median = ratios[n/2]
	} else {
		c.Median = (ratios[n/2-1] + ratios[n/2]) / 2
	}
	return c
}

func storeName(c Config) string {
	if tasker.IsPostgresURL(c.DB) {
		return "postgres"
	}
	return "sqlite"
}

func storeLabel(store string) string {
	if store == "postgres" {
		return "PostgreSQL"
	}
	return "SQLite"
}

// WriteComparison writes the pairs of a comparison and its summary as a
// table.
func WriteComparison(w io.Writer, c *Comparison) error {
	if _, err := fmt.Fprintf(w, "%5s  %-10s  %14s  %18s  %6s\n", "pair", "first", "SQLite tasks/s", "PostgreSQL tasks/s", "ratio"); err != nil {
		return err
	}
	for i, p := range c.Pairs {
		if _, err := fmt.Fprintf(w, "%5d  %-10s  %14s  %18s  %5.2f×\n", i+1, storeLabel(p.First), fmtRate(p.SQLite), fmtRate(p.Postgres), p.Ratio); err != nil {
			return err
		}
	}
	verdict := "below the target"
	if c.Median >= c.Target {
		verdict = "the target is met"
	}
	_, err := fmt.Fprintf(w, "median %.2f× (from %.2f× to %.2f×) over %s; target at least %.0f×: %s\n",
		c.Median, c.Min, c.Max, Pairs(len(c.Pairs)), c.Target, verdict)
	return err
}

// Pairs is "1 pair" or "N pairs".
func Pairs(n int) string {
	if n == 1 {
		return "1 pair"
	}
	return fmt.Sprintf("%d pairs", n)
}

// Package storecopy copies an embedded SQLite store into a PostgreSQL
// store: templates, tasks, steps, edges and the whole event log, keeping
// ids, sequence numbers and cursors, so unfinished tasks continue on
// PostgreSQL where they stopped; and the API tokens.
package storecopy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tasker-go/tasker/internal/store"
	"github.com/tasker-go/tasker/internal/store/postgres"
	"github.com/tasker-go/tasker/internal/store/sqlite"
)

// ErrInUse reports a source store that live workers may still be using.
var ErrInUse = errors.New("the source store is in use")

// Stats counts what was copied.
type Stats struct {
	Tokens, Subscriptions, Deliveries, Templates, Tasks, Steps, Edges, Events int
	Unfinished                                                                int
}

// Copy copies src into dst, which must hold no task. It refuses to run
// while src has running steps with unexpired leases (a worker is using it)
// and holds src's write lock while it copies, so nothing changes meanwhile.
// The copy is one transaction on dst: all or nothing.
func Copy(ctx context.Context, src *sqlite.Store, dst *postgres.Store, now time.Time) (*Stats, error) {
	im, err := dst.BeginImport(ctx)
	if err != nil {
		return nil, err
	}
	stats := &Stats{}
	first := true
	err = src.Export(ctx, 2000, func(d *store.Dump) error {
		if first {
			first = false
			n, err := src.ActiveLeases(ctx, now)
			if err != nil {
				return err
			}
			if n > 0 {
				return fmt.Errorf("%w: %d steps are running under unexpired leases; stop the workers (or wait for the leases to expire) and try again", ErrInUse, n)
			}
		}
		stats.Tokens += len(d.Tokens)
		stats.Subscriptions += len(d.Subscriptions)
		stats.Deliveries += len(d.Deliveries)
		stats.Templates += len(d.Templates)
		stats.Tasks += len(d.Tasks)
		stats.Steps += len(d.Steps)
		stats.Edges += len(d.Edges)
		stats.Events += len(d.Events)
		for _, t := range d.Tasks {
			if !t.State.Finished() {
				stats.Unfinished++
			}
		}
		return im.Add(ctx, d)
	})
	if err != nil {
		_ = im.Rollback(context.WithoutCancel(ctx))
		return nil, err
	}
	if err := im.Commit(ctx); err != nil {
		return nil, err
	}
	return stats, nil
}

package engine

import (
	"context"
	"log/slog"
	"time"
)

// warmer is implemented by stores whose connections are worth opening and
// readying before the first claim (PostgreSQL: its pool, and the hot
// path's statements prepared on each connection).
type warmer interface {
	Warm(ctx context.Context) error
}

// warmTimeout bounds how long Start waits for the store to warm up: a
// store slower than that to open its connections is started without them.
const warmTimeout = 5 * time.Second

// warm readies the store's connections, if it has any to ready. A store
// that cannot warm up still works: the failure is logged, not returned.
func (e *Engine) warm(ctx context.Context) {
	w, ok := e.store.(warmer)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, warmTimeout)
	defer cancel()
	start := e.clock.Now()
	if err := w.Warm(ctx); err != nil {
		e.log.WarnContext(ctx, "engine: the store's connections could not all be readied; they will be as they are used", slog.Any("error", err))
		return
	}
	e.log.DebugContext(ctx, "engine: store connections readied", slog.Duration("took", e.clock.Now().Sub(start)))
}

package postgres

import (
	"context"
	"time"
)

// WakeUps returns a channel that receives a value whenever another process
// (or another store of this one) commits a change that made steps ready,
// using LISTEN on a dedicated connection. This store's own changes are
// left out while a commit hook is set (OnCommit): the hook has told this
// process already, and a second wake-up would only cost an empty claim;
// after a commit that failed without telling whether it committed, the
// next notification of this store's own wakes this process again. The connection is re-established with backoff when
// it breaks; the channel is closed when ctx is done. It returns nil when
// LISTEN is disabled (Options.DisableListen). Notifications are hints:
// workers also poll.
func (s *Store) WakeUps(ctx context.Context) <-chan struct{} {
	if s.opts.DisableListen {
		return nil
	}
	ch := make(chan struct{}, 1)
	go s.listen(ctx, ch)
	return ch
}

func (s *Store) listen(ctx context.Context, ch chan<- struct{}) {
	defer close(ch)
	signal := func() {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := s.listenOnce(ctx, signal)
		if ctx.Err() != nil {
			return
		}
		s.log.WarnContext(ctx, "postgres: LISTEN connection lost; reconnecting", "error", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// listenOnce holds one connection in LISTEN until it fails. After
// (re)connecting it signals once, since notifications may have been missed.
func (s *Store) listenOnce(ctx context.Context, signal func()) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "LISTEN "+quoteIdent(s.channel)); err != nil {
		return err
	}
	defer func() {
		// Do not return a LISTENing connection to the pool.
		if !conn.Conn().IsClosed() {
			_, _ = conn.Exec(context.WithoutCancel(ctx), "UNLISTEN *")
		}
	}()
	signal()
	for {
		n, err := conn.Conn().WaitForNotification(ctx)
		if err != nil {
			return err
		}
		if n.Payload == s.origin && s.hook.Load() != nil && !s.takeUnannounced() {
			continue
		}
		signal()
	}
}

// takeUnannounced reports whether a commit of this store failed without
// telling whether it committed, and counts one off: its notification, if
// it committed, must wake this process, which its hook did not.
func (s *Store) takeUnannounced() bool {
	for {
		n := s.unannounced.Load()
		if n <= 0 {
			return false
		}
		if s.unannounced.CompareAndSwap(n, n-1) {
			return true
		}
	}
}

func quoteIdent(s string) string { return `"` + s + `"` }

package engine

import (
	"context"
	"log/slog"
	"slices"
	"sync"
)

// lazyAttrs is a handler that adds attributes to the records of h, and
// asks h to prepare them (WithAttrs, which formats them ahead of time in
// the standard handlers) only when a first record is handled. A step's
// logger carries the step's attributes, and most steps log nothing at an
// enabled level: preparing them for every attempt cost a burn-down 5 % of
// the engine's CPU.
type lazyAttrs struct {
	h     slog.Handler
	attrs []slog.Attr

	once sync.Once
	with slog.Handler
}

func withLazyAttrs(h slog.Handler, attrs ...slog.Attr) *lazyAttrs {
	return &lazyAttrs{h: h, attrs: attrs}
}

func (l *lazyAttrs) prepared() slog.Handler {
	l.once.Do(func() { l.with = l.h.WithAttrs(l.attrs) })
	return l.with
}

// Enabled reports whether h handles records of this level.
func (l *lazyAttrs) Enabled(ctx context.Context, level slog.Level) bool {
	return l.h.Enabled(ctx, level)
}

// Handle hands the record to h with the attributes.
func (l *lazyAttrs) Handle(ctx context.Context, r slog.Record) error {
	return l.prepared().Handle(ctx, r)
}

// WithAttrs returns a handler with more attributes, still lazy.
func (l *lazyAttrs) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &lazyAttrs{h: l.h, attrs: append(slices.Clip(l.attrs), attrs...)}
}

// WithGroup returns h with the attributes and the group.
func (l *lazyAttrs) WithGroup(name string) slog.Handler {
	return l.prepared().WithGroup(name)
}

package engine

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
)

// countingHandler counts the calls of WithAttrs of the handler it wraps.
type countingHandler struct {
	slog.Handler
	withs *int
}

func (c countingHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	*c.withs++
	return countingHandler{c.Handler.WithAttrs(attrs), c.withs}
}

func TestLazyAttrs(t *testing.T) {
	var buf bytes.Buffer
	withs := 0
	base := countingHandler{slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}), &withs}
	log := slog.New(withLazyAttrs(base, slog.String("task_id", "t1"), slog.Int("attempt", 2)))
	log.Debug("not enabled")
	log.DebugContext(context.Background(), "not enabled either", slog.String("x", "y"))
	if withs != 0 || buf.Len() != 0 {
		t.Fatalf("nothing logged at an enabled level, yet WithAttrs ran %d times and wrote %q", withs, buf.String())
	}
	log.Info("one", slog.String("k", "v"))
	log.Warn("two")
	log.With(slog.String("more", "m")).Error("three")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("logged %d lines, want 3:\n%s", len(lines), buf.String())
	}
	for _, l := range lines {
		if !strings.Contains(l, "task_id=t1 attempt=2") {
			t.Errorf("line without the step's attributes: %s", l)
		}
	}
	if !strings.Contains(lines[0], "k=v") || !strings.Contains(lines[2], "more=m") {
		t.Errorf("a record's own attributes are missing:\n%s", buf.String())
	}
	if withs != 2 {
		t.Errorf("WithAttrs ran %d times, want 2 (once for the step's logger, once for With)", withs)
	}
	buf.Reset()
	log.WithGroup("g").Info("grouped", slog.String("k", "v"))
	if got := buf.String(); !strings.Contains(got, "task_id=t1") || !strings.Contains(got, "g.k=v") {
		t.Errorf("grouped line: %s", got)
	}
}

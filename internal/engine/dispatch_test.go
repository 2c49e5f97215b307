package engine

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestDueTimesHeap(t *testing.T) {
	t.Parallel()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var h dueTimes
	var want []time.Time
	for range 200 {
		d := base.Add(time.Duration(rand.IntN(1000)) * time.Millisecond)
		h.push(d)
		want = append(want, d)
	}
	slices.SortFunc(want, func(a, b time.Time) int { return a.Compare(b) })
	if first, ok := h.peek(); !ok || !first.Equal(want[0]) {
		t.Fatalf("peek = %v, want %v", first, want[0])
	}
	cut := base.Add(500 * time.Millisecond)
	h.popUntil(cut)
	rest := slices.DeleteFunc(slices.Clone(want), func(d time.Time) bool { return !d.After(cut) })
	if len(h) != len(rest) {
		t.Fatalf("%d left after popUntil, want %d", len(h), len(rest))
	}
	if len(rest) > 0 {
		if first, _ := h.peek(); !first.Equal(rest[0]) {
			t.Fatalf("peek after pop = %v, want %v", first, rest[0])
		}
	}
	h.popUntil(base.Add(time.Hour))
	if _, ok := h.peek(); ok || len(h) != 0 {
		t.Fatal("heap not empty after popping everything")
	}
}

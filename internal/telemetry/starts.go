package telemetry

import (
	"container/list"
	"sync"
	"time"
)

// maxTracked bounds the per-key memory of Metrics and Tracer (task start
// times, claim times): past it the oldest entries are evicted.
const maxTracked = 100_000

// timeMap is a bounded map from a key to a time. When it holds more than
// limit entries the entry set or updated least recently is evicted, so
// memory stays bounded even when the end of something (a task's
// completion) is never observed, for example because it happened in
// another process.
type timeMap struct {
	mu    sync.Mutex
	limit int
	m     map[string]*list.Element
	order *list.List // of *timeEntry, least recently set first
}

type timeEntry struct {
	key string
	t   time.Time
}

func newTimeMap(limit int) *timeMap {
	return &timeMap{limit: limit, m: make(map[string]*list.Element), order: list.New()}
}

// set records t for key, evicting the oldest entry if the map is full.
func (tm *timeMap) set(key string, t time.Time) {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	if e, ok := tm.m[key]; ok {
		e.Value.(*timeEntry).t = t
		tm.order.MoveToBack(e)
		return
	}
	tm.m[key] = tm.order.PushBack(&timeEntry{key: key, t: t})
	for tm.order.Len() > tm.limit {
		oldest := tm.order.Front()
		tm.order.Remove(oldest)
		delete(tm.m, oldest.Value.(*timeEntry).key)
	}
}

// take returns the time recorded for key and forgets it.
func (tm *timeMap) take(key string) (time.Time, bool) {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	e, ok := tm.m[key]
	if !ok {
		return time.Time{}, false
	}
	tm.order.Remove(e)
	delete(tm.m, key)
	return e.Value.(*timeEntry).t, true
}

// len returns the number of entries.
func (tm *timeMap) len() int {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return len(tm.m)
}

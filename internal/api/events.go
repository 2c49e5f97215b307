package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tasker-go/tasker"
	"github.com/tasker-go/tasker/internal/auth"
)

// eventFilter is the filter of the event endpoints.
type eventFilter struct {
	after     int64
	taskID    string
	namespace string
	name      string
	names     []string
	// none reports a filter that can match nothing for this principal.
	none bool
}

func eventNameChars(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '*') {
			return false
		}
	}
	return true
}

func (s *Server) eventFilter(r *http.Request, p *auth.Principal, extra ...string) (*eventFilter, *query, error) {
	q, err := newQuery(r, append([]string{"after", "task_id", "namespace", "name", "event"}, extra...)...)
	if err != nil {
		return nil, nil, err
	}
	f := &eventFilter{after: q.int64("after"), taskID: q.str("task_id", 64), namespace: q.str("namespace", 64),
		name: q.str("name", 64), names: q.list("event", 20, 128)}
	for _, n := range f.names {
		if !eventNameChars(n) || (strings.Contains(n, "*") && n != "*" && !strings.HasSuffix(n, ".*")) || strings.Count(n, "*") > 1 {
			q.errs = append(q.errs, fmt.Sprintf("event pattern %q must be a name, a prefix ending in .* or *", n))
		}
	}
	for _, n := range f.names {
		if n == "*" {
			f.names = nil
			break
		}
	}
	if p.Namespace != "" {
		if f.namespace != "" && f.namespace != p.Namespace {
			f.none = true
		}
		f.namespace = p.Namespace
	}
	return f, q, nil
}

func (f *eventFilter) opts(limit int) *tasker.EventListOpts {
	return &tasker.EventListOpts{After: f.after, TaskID: f.taskID, Namespace: f.namespace, TaskName: f.name, Names: f.names, Limit: limit}
}

// listEvents returns one page of the durable event log.
func (s *Server) listEvents(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	f, q, err := s.eventFilter(r, p, "limit")
	if err != nil {
		return err
	}
	limit := q.integer("limit", 100, 1, 1000)
	if err := q.err(); err != nil {
		return err
	}
	evs := []tasker.Event{}
	if !f.none {
		if evs, err = s.client.Events(r.Context(), f.opts(limit)); err != nil {
			return domainError(err)
		}
	}
	next := f.after
	if len(evs) > 0 {
		next = evs[len(evs)-1].Cursor
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": evs, "next_after": next})
	return nil
}

// streamEvents serves the event log as Server-Sent Events from a cursor.
// Each event's SSE id is its cursor, so a client that reconnects with
// Last-Event-ID resumes exactly after the last event it received: nothing
// is lost and nothing is repeated.
func (s *Server) streamEvents(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	f, q, err := s.eventFilter(r, p)
	if err != nil {
		return err
	}
	if last := r.Header.Get("Last-Event-ID"); last != "" {
		n, err := strconv.ParseInt(last, 10, 64)
		if err != nil || n < 0 {
			q.errs = append(q.errs, "Last-Event-ID must be an event cursor (a non-negative integer)")
		}
		f.after = n
	}
	if err := q.err(); err != nil {
		return err
	}
	ctx := r.Context()
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	// Wake up on events committed by this process; poll for the others.
	wake := s.client.Subscribe(&tasker.SubscribeOpts{Buffer: 1})
	defer wake.Close()
	poll := time.NewTicker(s.cfg.EventPoll)
	defer poll.Stop()
	lastWrite := s.cfg.Now()
	write := func(format string, args ...any) error {
		_ = rc.SetWriteDeadline(s.cfg.Now().Add(30 * time.Second))
		if _, err := fmt.Fprintf(w, format, args...); err != nil {
			return err
		}
		lastWrite = s.cfg.Now()
		return rc.Flush()
	}
	if err := write("retry: 2000\n: stream of the event log after cursor %d\n\n", f.after); err != nil {
		return nil
	}
	for {
		if !f.none {
			evs, err := s.client.Events(ctx, f.opts(500))
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				s.logError(r, err)
				_ = write("event: error\ndata: {\"code\":\"unavailable\"}\n\n")
				return nil
			}
			for _, ev := range evs {
				data, err := json.Marshal(ev)
				if err != nil {
					return nil
				}
				if err := write("id: %d\nevent: %s\ndata: %s\n\n", ev.Cursor, ev.Name, data); err != nil {
					return nil
				}
				f.after = ev.Cursor
			}
			if len(evs) == 500 {
				continue
			}
		}
		if s.cfg.Now().Sub(lastWrite) >= s.cfg.StreamHeartbeat {
			if err := write(": keep-alive\n\n"); err != nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.shutdown:
			return nil
		case <-wake.Events():
		case <-poll.C:
		}
	}
}

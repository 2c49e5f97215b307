package engine

import (
	"context"
	"fmt"
	"sync"

	"github.com/tasker-go/tasker/internal/store"
	"github.com/tasker-go/tasker/internal/template"
)

// templateCache holds compiled template definitions by digest. Definitions
// are immutable, so entries never go stale.
type templateCache struct {
	st store.Store
	mu sync.RWMutex
	m  map[string]*template.Template
}

func newTemplateCache(st store.Store) *templateCache {
	return &templateCache{st: st, m: map[string]*template.Template{}}
}

func (c *templateCache) put(t *template.Template) {
	c.mu.Lock()
	c.m[t.Digest()] = t
	c.mu.Unlock()
}

func (c *templateCache) get(ctx context.Context, id string) (*template.Template, error) {
	c.mu.RLock()
	t := c.m[id]
	c.mu.RUnlock()
	if t != nil {
		return t, nil
	}
	rec, err := c.st.TemplateGet(ctx, id)
	if err != nil {
		return nil, err
	}
	t, err = template.FromJSON(rec.Definition)
	if err != nil {
		return nil, fmt.Errorf("template %s: %w", id, err)
	}
	c.mu.Lock()
	c.m[id] = t
	c.mu.Unlock()
	return t, nil
}

// limited returns the templates with a concurrency limit, by digest.
func (c *templateCache) limited() map[string]int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := map[string]int{}
	for id, t := range c.m {
		if t.Concurrency > 0 {
			out[id] = t.Concurrency
		}
	}
	return out
}

// load reads every stored template, so limits are known before claiming.
func (c *templateCache) load(ctx context.Context) error {
	recs, err := c.st.TemplateList(ctx)
	if err != nil {
		return err
	}
	for _, r := range recs {
		if _, err := c.get(ctx, r.ID); err != nil {
			return err
		}
	}
	return nil
}

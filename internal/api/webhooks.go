package api

import (
	"context"
	"net/http"

	"github.com/tasker-go/tasker"
	"github.com/tasker-go/tasker/internal/auth"
)

// scopedNamespace is the namespace filter of a listing for a principal: a
// confined principal asking for another namespace gets one that matches
// nothing.
func scopedNamespace(p *auth.Principal, asked string) string {
	switch {
	case p.Namespace == "":
		return asked
	case asked != "" && asked != p.Namespace:
		return "\x00" // no namespace has this name
	}
	return p.Namespace
}

func (s *Server) listWebhooks(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	q, err := newQuery(r, "namespace")
	if err != nil {
		return err
	}
	ns := q.str("namespace", 64)
	if err := q.err(); err != nil {
		return err
	}
	list, err := s.client.Webhooks(r.Context(), scopedNamespace(p, ns))
	if err != nil {
		return domainError(err)
	}
	if list == nil {
		list = []*tasker.WebhookInfo{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"webhooks": list})
	return nil
}

func (s *Server) listDeliveries(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	q, err := newQuery(r, "webhook", "state", "task_id", "namespace", "before", "limit")
	if err != nil {
		return err
	}
	opts := &tasker.DeliveryListOpts{SubscriptionID: q.str("webhook", 300), State: q.str("state", 16), TaskID: q.str("task_id", 64),
		Namespace: q.str("namespace", 64), Before: q.str("before", 64), Limit: q.integer("limit", 100, 1, 1000)}
	switch opts.State {
	case "", tasker.DeliveryPending, tasker.DeliveryDelivered, tasker.DeliveryFailed:
	default:
		q.errs = append(q.errs, "state must be one of pending, delivered, failed")
	}
	if err := q.err(); err != nil {
		return err
	}
	opts.Namespace = scopedNamespace(p, opts.Namespace)
	list, err := s.client.Deliveries(r.Context(), opts)
	if err != nil {
		return domainError(err)
	}
	out := map[string]any{"deliveries": list}
	if len(list) == opts.Limit {
		out["next_before"] = list[len(list)-1].ID
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// visibleDelivery loads a delivery, as not found when it is outside the
// principal's namespace.
func (s *Server) visibleDelivery(r *http.Request, p *auth.Principal) (*tasker.Delivery, error) {
	return visible(r, p, "delivery", s.client.Delivery, func(d *tasker.Delivery) string { return d.Namespace })
}

func (s *Server) getDelivery(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	d, err := s.visibleDelivery(r, p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"delivery": d})
	return nil
}

func (s *Server) retryDelivery(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	d, err := s.visibleDelivery(r, p)
	if err != nil {
		return err
	}
	return answerAction(w, r, "delivery", d.ID, false, func(ctx context.Context, id, _ string) (*tasker.Delivery, error) {
		return s.client.RetryDelivery(ctx, id)
	})
}

func (s *Server) me(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	perms := []string{}
	for _, perm := range auth.Permissions() {
		if p.Can(perm) && (p.Namespace == "" || perm != auth.MetricsRead) {
			perms = append(perms, perm.String())
		}
	}
	out := map[string]any{"id": p.ID, "name": p.Name, "role": p.Role, "permissions": perms}
	if p.Namespace != "" {
		out["namespace"] = p.Namespace
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) overview(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	q, err := newQuery(r, "namespace")
	if err != nil {
		return err
	}
	ns := q.str("namespace", 64)
	if err := q.err(); err != nil {
		return err
	}
	o, err := s.client.Overview(r.Context(), scopedNamespace(p, ns))
	if err != nil {
		return domainError(err)
	}
	writeJSON(w, http.StatusOK, o)
	return nil
}

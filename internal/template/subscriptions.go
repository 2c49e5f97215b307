package template

import (
	"fmt"
	"golang.org/x/net/http/httpguts"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/tasker-go/tasker/internal/event"
	"github.com/tasker-go/tasker/internal/retry"
)

// MaxSubscriptions bounds the subscriptions of a template or a
// subscriptions file.
const MaxSubscriptions = 100

// Subscription declares a webhook: which stored events it delivers, where,
// signed with which secret, and how deliveries are retried.
type Subscription struct {
	// Name is unique among the subscriptions of its template or file.
	Name string `json:"name"`
	// Namespace and TaskName keep the events of tasks of matching
	// templates; empty matches any. A template's subscriptions always
	// match only its own tasks.
	Namespace string `json:"namespace,omitempty"`
	TaskName  string `json:"template,omitempty"`
	// Events are name patterns: an exact name, a prefix ending in ".*"
	// such as "step.*", or "*".
	Events []string `json:"events"`
	// URL receives a POST per event.
	URL string `json:"url"`
	// Secret signs each delivery (HMAC-SHA256). It may hold ${env:NAME}
	// and ${file:PATH} references, resolved when delivering.
	Secret string `json:"secret"`
	// Headers are added to each delivery; values may hold references.
	Headers map[string]string `json:"headers,omitempty"`
	// Retry bounds and spaces the attempts of a delivery.
	Retry retry.Policy `json:"retry"`
}

// DefaultDeliveryRetry is the retry policy of a subscription that sets
// none: 12 attempts, 5 s doubling to 10 min, about an hour in all.
func DefaultDeliveryRetry() retry.Policy {
	return retry.Policy{Limit: 12, Initial: 5 * time.Second, Multiplier: 2, Max: 10 * time.Minute, Jitter: 0.2}
}

// MaxDeliveryAttempts bounds a subscription's retry limit.
const MaxDeliveryAttempts = 100

func subscriptionKeys(server bool) []string {
	keys := []string{"name", "events", "url", "secret", "headers", "retry"}
	if server {
		keys = append(keys, "namespace", "template")
	}
	return keys
}

// subscriptionSpec is a subscription as written.
type subscriptionSpec struct {
	at         loc
	name       opt[string]
	namespace  opt[string]
	taskName   opt[string]
	events     []opt[string]
	eventsAt   loc
	url        opt[string]
	secret     opt[string]
	headers    map[string]string
	headerLocs map[string]loc
	retry      retrySpec
}

func (c *checker) subscription(n *node, p *path, server bool) subscriptionSpec {
	o := c.object(n, p, "a subscription", subscriptionKeys(server))
	s := subscriptionSpec{at: locOf(n, p)}
	for _, k := range []string{"name", "events", "url", "secret"} {
		o.require(k)
	}
	s.name = o.name("name")
	if server {
		s.namespace = o.name("namespace")
		s.taskName = o.name("template")
		if s.taskName.set && !s.namespace.set {
			c.r.addAt(s.taskName.at, "template needs namespace")
		}
	}
	items, ip := o.list("events", "event names or patterns")
	if en, _ := o.value("events"); en != nil {
		s.eventsAt = locOf(en, ip)
		if en.kind == kindSeq && len(items) == 0 {
			c.r.add(en.line, en.col, ip, "list at least one event name or pattern")
		}
	}
	for i, it := range items {
		if it.kind != kindString {
			c.r.add(it.line, it.col, ip.at(i), "must be an event name or pattern, got %s", it.describe())
			continue
		}
		s.events = append(s.events, some(it.value.(string), locOf(it, ip.at(i))))
	}
	s.url = o.str("url")
	if s.url.set {
		if err := checkWebhookURL(s.url.v); err != nil {
			c.r.addAt(s.url.at, "%v", err)
		}
	}
	s.secret = o.str("secret")
	if s.secret.set && strings.TrimSpace(s.secret.v) == "" {
		c.r.addAt(s.secret.at, "must not be empty")
	}
	if hn, hp := o.value("headers"); hn != nil {
		if hn.kind != kindMap {
			c.r.add(hn.line, hn.col, hp, "headers must be a mapping of header names to strings, got %s", hn.describe())
		} else {
			s.headers, s.headerLocs = map[string]string{}, map[string]loc{}
			for _, e := range hn.entries {
				kp := hp.child(e.key)
				switch {
				case e.badKey != "" || !httpguts.ValidHeaderFieldName(e.key):
					c.r.add(e.line, e.col, kp, "%q is not a valid header name", e.key+e.badKey)
				case e.value.kind != kindString:
					c.r.add(e.value.line, e.value.col, kp, "must be a string, got %s", e.value.describe())
				case strings.ContainsAny(e.value.value.(string), "\r\n"):
					c.r.add(e.value.line, e.value.col, kp, "must not hold a line break")
				default:
					s.headers[e.key] = e.value.value.(string)
					s.headerLocs[e.key] = locOf(e.value, kp)
				}
			}
		}
	}
	if rn, rp := o.value("retry"); rn != nil {
		s.retry = c.retry(rn, rp)
		if s.retry.limit.set && s.retry.limit.v > MaxDeliveryAttempts {
			c.r.addAt(s.retry.limit.at, "must be at most %d for a subscription", MaxDeliveryAttempts)
		}
	}
	return s
}

// checkWebhookURL accepts absolute http and https URLs with a host.
func checkWebhookURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("invalid URL: %v", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("the URL must start with http:// or https://, got %q", raw)
	}
	if u.Host == "" {
		return fmt.Errorf("the URL %q has no host", raw)
	}
	return nil
}

// compileSubscriptions resolves subscriptions: unique names, event
// patterns that can match stored events (declared is the set of custom
// events that may exist; nil accepts any valid custom name), retries.
func compileSubscriptions(specs []subscriptionSpec, declared map[string]bool, r *reporter) []Subscription {
	var out []Subscription
	first := map[string]int{}
	conflicts := map[[2]string]bool{}
	for i, s := range specs {
		if s.name.set {
			if j, dup := first[s.name.v]; dup {
				r.addAt(s.name.at, "duplicate subscription %q, already declared by subscriptions[%d]", s.name.v, j)
			} else {
				first[s.name.v] = i
			}
		}
		sub := Subscription{Name: s.name.v, Namespace: s.namespace.v, TaskName: s.taskName.v, URL: s.url.v, Secret: s.secret.v,
			Headers: s.headers, Retry: resolveRetryFrom(DefaultDeliveryRetry(), s.retry, r, conflicts)}
		seen := map[string]bool{}
		for _, e := range s.events {
			if seen[e.v] {
				r.addAt(e.at, "%q is listed twice", e.v)
				continue
			}
			seen[e.v] = true
			if err := checkEventPattern(e.v, declared); err != nil {
				r.addAt(e.at, "%v", err)
				continue
			}
			sub.Events = append(sub.Events, e.v)
		}
		out = append(out, sub)
	}
	return out
}

// checkEventPattern accepts "*", a prefix pattern that can match a stored
// event, and the name of a stored event.
func checkEventPattern(p string, declared map[string]bool) error {
	var stored []string
	for _, s := range event.Catalog() {
		if s.Durable {
			stored = append(stored, string(s.Name))
		}
	}
	custom := make([]string, 0, len(declared))
	for name := range declared {
		custom = append(custom, name)
	}
	slices.Sort(custom)
	switch {
	case p == "*":
		return nil
	case strings.HasSuffix(p, ".*"):
		prefix := strings.TrimSuffix(p, "*")
		if prefix == "." || strings.Contains(strings.TrimSuffix(prefix, "."), "*") {
			return fmt.Errorf("invalid pattern %q: use a name, a prefix such as \"step.*\", or \"*\"", p)
		}
		for _, n := range append(stored, custom...) {
			if strings.HasPrefix(n, prefix) {
				return nil
			}
		}
		if declared == nil && event.ValidateCustomName(strings.TrimSuffix(prefix, ".")+".x") == nil {
			return nil
		}
		return fmt.Errorf("pattern %q matches no event stored in the event log", p)
	case strings.Contains(p, "*"):
		return fmt.Errorf("invalid pattern %q: use a name, a prefix such as \"step.*\", or \"*\"", p)
	}
	if spec, ok := event.Lookup(event.Name(p)); ok {
		if !spec.Durable {
			return fmt.Errorf("event %q is not stored in the event log, so it cannot be delivered (stored: task.*, step.* lifecycle events and custom events)", p)
		}
		return nil
	}
	if declared == nil {
		if err := event.ValidateCustomName(p); err != nil {
			return fmt.Errorf("unknown event %q%s", p, suggest(p, stored))
		}
		return nil
	}
	if !declared[p] {
		return fmt.Errorf("unknown event %q: not a lifecycle event nor one of the template's events%s", p, suggest(p, append(stored, custom...)))
	}
	return nil
}

// ParseSubscriptions parses a subscriptions file: a mapping with the key
// "subscriptions", a list of subscriptions that may also filter by
// namespace and template. filename is only used in problems.
func ParseSubscriptions(filename string, data []byte) ([]Subscription, error) {
	r := &reporter{file: filename}
	root := parseYAML(data, r)
	if root == nil {
		return nil, r.err(nil)
	}
	c := &checker{r: r}
	o := c.object(root, nil, "a subscriptions file", []string{"subscriptions"})
	var specs []subscriptionSpec
	if o.m != nil {
		o.require("subscriptions")
		items, p := o.list("subscriptions", "subscriptions")
		if len(items) > MaxSubscriptions {
			n, _ := o.value("subscriptions")
			c.r.add(n.line, n.col, p, "too many subscriptions: %d, at most %d", len(items), MaxSubscriptions)
		}
		for i, it := range items {
			specs = append(specs, c.subscription(it, p.at(i), true))
		}
	}
	subs := compileSubscriptions(specs, nil, r)
	if err := r.err(root); err != nil {
		return nil, err
	}
	return subs, nil
}

// ParseSubscriptionsFile reads and parses a subscriptions file.
func ParseSubscriptionsFile(path string) ([]Subscription, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read subscriptions: %w", err)
	}
	return ParseSubscriptions(path, data)
}

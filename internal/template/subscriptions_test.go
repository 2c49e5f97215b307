package template

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const subscribedYAML = `namespace: shop
name: order
version: 1.0.0
events:
  - {name: order.flagged}
subscriptions:
  - name: ops
    events: [task.completed, task.failed, step.*, order.flagged]
    url: https://hooks.example.com/tasker
    secret: ${env:HOOK_SECRET}
    headers: {X-Team: shop}
    retry: {limit: 5, backoff: {initial: 100ms, max: 2s}}
  - name: audit
    events: ["*"]
    url: http://audit.internal:8080/in
    secret: literal-secret
steps:
  - {name: a, handler: noop}
`

func TestSubscriptionsInTemplates(t *testing.T) {
	t.Parallel()
	tm, err := Parse("order.yaml", []byte(subscribedYAML), ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := []Subscription{
		{Name: "ops", Events: []string{"task.completed", "task.failed", "step.*", "order.flagged"}, URL: "https://hooks.example.com/tasker",
			Secret: "${env:HOOK_SECRET}", Headers: map[string]string{"X-Team": "shop"}},
		{Name: "audit", Events: []string{"*"}, URL: "http://audit.internal:8080/in", Secret: "literal-secret"},
	}
	want[0].Retry = DefaultDeliveryRetry()
	want[0].Retry.Limit, want[0].Retry.Initial, want[0].Retry.Max = 5, 100*time.Millisecond, 2*time.Second
	want[1].Retry = DefaultDeliveryRetry()
	if diff := cmp.Diff(want, tm.Subscriptions); diff != "" {
		t.Errorf("subscriptions (-want +got):\n%s", diff)
	}
	// They are part of the canonical definition and survive a round trip.
	def, _ := tm.MarshalJSON()
	if !strings.Contains(string(def), `"subscriptions":[{"name":"ops"`) {
		t.Errorf("canonical JSON lacks the subscriptions: %s", def)
	}
	back, err := FromJSON(def)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(tm.Subscriptions, back.Subscriptions); diff != "" || back.Digest() != tm.Digest() {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}

func TestSubscriptionProblems(t *testing.T) {
	t.Parallel()
	src := `namespace: shop
name: order
version: 1.0.0
subscriptions:
  - name: ops
    events: [task.complete, step.handled, workflow.*, "st*p", order.flagged]
    url: ftp://hooks.example.com/
    secret: ""
    headers: {"Bad Header": x}
  - name: ops
    events: []
    url: https://x.example/
    secret: s
  - {name: nosecret, events: ["*"], url: "https:///nohost"}
steps:
  - {name: a, handler: noop}
`
	_, err := Parse("order.yaml", []byte(src), ParseOptions{})
	got := map[string]bool{}
	for _, pr := range problemsOf(t, err) {
		got[pr.String()] = true
	}
	for _, want := range []string{
		`order.yaml:6: subscriptions[0].events[0]: unknown event "task.complete": not a lifecycle event nor one of the template's events (did you mean "task.completed"?)`,
		`order.yaml:6: subscriptions[0].events[1]: event "step.handled" is not stored in the event log`,
		`order.yaml:6: subscriptions[0].events[2]: pattern "workflow.*" matches no event stored in the event log`,
		`order.yaml:6: subscriptions[0].events[3]: invalid pattern "st*p"`,
		`order.yaml:6: subscriptions[0].events[4]: unknown event "order.flagged"`,
		`order.yaml:7: subscriptions[0].url: the URL must start with http:// or https://`,
		`order.yaml:8: subscriptions[0].secret: must not be empty`,
		`order.yaml:9: subscriptions[0].headers["Bad Header"]: "Bad Header" is not a valid header name`,
		`order.yaml:10: subscriptions[1].name: duplicate subscription "ops", already declared by subscriptions[0]`,
		`order.yaml:11: subscriptions[1].events: list at least one event name or pattern`,
		`order.yaml:14: subscriptions[2]: missing required key "secret"`,
		`order.yaml:14: subscriptions[2].url: the URL "https:///nohost" has no host`,
	} {
		found := false
		for g := range got {
			if strings.HasPrefix(g, want) {
				found = true
			}
		}
		if !found {
			t.Errorf("missing problem %q\ngot:\n%s", want, strings.Join(keys(got), "\n"))
		}
	}
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestParseSubscriptionsFile(t *testing.T) {
	t.Parallel()
	subs, err := ParseSubscriptions("subs.yaml", []byte(`subscriptions:
  - name: all-failures
    events: [task.failed, billing.disputed]
    url: https://pager.example.com/hook
    secret: ${file:/run/secrets/pager}
  - name: shop-orders
    namespace: shop
    template: order
    events: [task.*]
    url: https://shop.example.com/hook
    secret: s3cret
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(subs) != 2 || subs[1].Namespace != "shop" || subs[1].TaskName != "order" || subs[0].Namespace != "" || subs[0].Retry != DefaultDeliveryRetry() {
		t.Errorf("subscriptions = %+v", subs)
	}
	_, err = ParseSubscriptions("subs.yaml", []byte(`subscriptions:
  - {name: x, template: order, events: [task.bogus], url: "https://a.example/", secret: s}
extra: 1
`))
	var msgs []string
	for _, pr := range problemsOf(t, err) {
		msgs = append(msgs, pr.String())
	}
	all := strings.Join(msgs, "\n")
	for _, want := range []string{`template needs namespace`, `unknown event "task.bogus"`, `unknown key "extra"`} {
		if !strings.Contains(all, want) {
			t.Errorf("problems lack %q:\n%s", want, all)
		}
	}
}

package template

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tasker-go/tasker/internal/retry"
)

// ignoreUnexported compares only what callers can see of a Template.
var ignoreUnexported = cmpopts.IgnoreUnexported(Template{})

func mustParseFile(t *testing.T, path string, opts ParseOptions) *Template {
	t.Helper()
	tpl, err := ParseFile(path, opts)
	if err != nil {
		t.Fatalf("ParseFile(%s): %v", path, err)
	}
	return tpl
}

func mustParse(t *testing.T, src string, opts ParseOptions) *Template {
	t.Helper()
	tpl, err := Parse("test.yaml", []byte(src), opts)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return tpl
}

// policy is retry.Default() with some fields changed.
func policy(change func(*retry.Policy)) retry.Policy {
	p := retry.Default()
	change(&p)
	return p
}

func TestParseOrder(t *testing.T) {
	t.Parallel()
	tpl := mustParseFile(t, "testdata/order.yaml", ParseOptions{})
	defaults := retry.Policy{Limit: 3, Initial: time.Second, Multiplier: 2, Max: 5 * time.Minute, Jitter: 0.1}
	want := &Template{
		Namespace:        "ecommerce",
		Name:             "process_order",
		Version:          "1.0.0",
		Description:      "Process a customer order",
		IdentityStrategy: IdentityHash,
		Concurrency:      8,
		ContextSchema:    json.RawMessage(`{"properties":{"email":{"format":"email","type":"string"},"order_id":{"type":"integer"}},"required":["order_id"],"type":"object"}`),
		Events: []EventDecl{
			{Name: "order.placed", Description: "An order was placed", Schema: json.RawMessage(`{"required":["order_id"],"type":"object"}`)},
			{Name: "order.noted"},
		},
		Steps: []Step{
			{
				Index: 0, Name: "validate_cart", Description: "Check the cart", Handler: "command",
				Config:    json.RawMessage(`{"command":["sh","-c","echo {}"],"env":{"A":"1","B":"2"}}`),
				Children:  []int{1, 2},
				Retryable: true, Retry: defaults, Timeout: 30 * time.Second,
			},
			{
				Index: 1, Name: "reserve_stock", Handler: "http",
				DependsOn: []string{"validate_cart"}, Parents: []int{0}, Children: []int{3}, Level: 1,
				Retryable: true, Timeout: 10 * time.Second,
				Retry: retry.Policy{Limit: 5, Initial: 500 * time.Millisecond, Multiplier: 2, Max: 5 * time.Minute, Jitter: 0.1},
			},
			{
				Index: 2, Name: "charge_card", Handler: "http",
				DependsOn: []string{"validate_cart"}, Parents: []int{0}, Children: []int{3}, Level: 1,
				Retryable: false, Timeout: 30 * time.Second,
				Retry: retry.Policy{Limit: 1, Initial: time.Second, Multiplier: 2, Max: 5 * time.Minute, Jitter: 0.1},
			},
			{
				Index: 3, Name: "ship", Handler: "command",
				Config:    json.RawMessage(`{"url":"http://warehouse.local/ship"}`),
				DependsOn: []string{"reserve_stock", "charge_card"}, Parents: []int{1, 2}, Level: 2,
				Retryable: true, Retry: defaults, Timeout: 30 * time.Second,
			},
		},
	}
	if diff := cmp.Diff(want, tpl, ignoreUnexported, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("template mismatch (-want +got):\n%s", diff)
	}
	if got, want := tpl.Key(), "ecommerce/process_order@1.0.0"; got != want {
		t.Errorf("Key() = %q, want %q", got, want)
	}
	if i, ok := tpl.StepIndex("charge_card"); !ok || i != 2 {
		t.Errorf("StepIndex(charge_card) = %d, %v, want 2, true", i, ok)
	}
	if i, ok := tpl.StepIndex("nope"); ok {
		t.Errorf("StepIndex(nope) = %d, true, want false", i)
	}
	if g := tpl.Graph(); g.Len() != 4 || g.EdgeCount() != 4 {
		t.Errorf("Graph() has %d nodes and %d edges, want 4 and 4", g.Len(), g.EdgeCount())
	}
}

func TestParseAppliesEnvironment(t *testing.T) {
	t.Parallel()
	tpl := mustParseFile(t, "testdata/order.yaml", ParseOptions{Environment: "production"})
	// production: defaults {timeout: 1m, retry: {limit: 10}}, validate_cart
	// {config: {env: {A: prod}}, timeout: 2m}, ship {handler: http}.
	type summary struct {
		Handler   string
		Config    string
		Timeout   time.Duration
		Retryable bool
		Retry     retry.Policy
	}
	var got []summary
	for _, s := range tpl.Steps {
		got = append(got, summary{s.Handler, string(s.Config), s.Timeout, s.Retryable, s.Retry})
	}
	want := []summary{
		{"command", `{"command":["sh","-c","echo {}"],"env":{"A":"prod","B":"2"}}`, 2 * time.Minute, true,
			retry.Policy{Limit: 10, Initial: time.Second, Multiplier: 2, Max: 5 * time.Minute, Jitter: 0.1}},
		{"http", "", 10 * time.Second, true,
			retry.Policy{Limit: 5, Initial: 500 * time.Millisecond, Multiplier: 2, Max: 5 * time.Minute, Jitter: 0.1}},
		{"http", "", time.Minute, false,
			retry.Policy{Limit: 1, Initial: time.Second, Multiplier: 2, Max: 5 * time.Minute, Jitter: 0.1}},
		{"http", `{"url":"http://warehouse.local/ship"}`, time.Minute, true,
			retry.Policy{Limit: 10, Initial: time.Second, Multiplier: 2, Max: 5 * time.Minute, Jitter: 0.1}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("steps in production mismatch (-want +got):\n%s", diff)
	}

	// An environment without overrides changes nothing.
	staging := mustParseFile(t, "testdata/order.yaml", ParseOptions{Environment: "staging"})
	plain := mustParseFile(t, "testdata/order.yaml", ParseOptions{})
	if diff := cmp.Diff(plain, staging, ignoreUnexported); diff != "" {
		t.Errorf("staging differs from no environment (-plain +staging):\n%s", diff)
	}
}

const header = "namespace: ns\nname: tpl\nversion: 1.0.0\n"

func TestDefaultsResolution(t *testing.T) {
	t.Parallel()
	type resolved struct {
		Timeout   time.Duration
		Retryable bool
		Retry     retry.Policy
	}
	builtin := resolved{5 * time.Minute, true, retry.Default()}
	tests := []struct {
		name string
		src  string // appended to header
		want resolved
	}{
		{
			name: "nothing set: built-in defaults",
			src:  "steps:\n  - {name: a, handler: h}\n",
			want: builtin,
		},
		{
			name: "null values are absent",
			src:  "defaults:\nsteps:\n  - {name: a, handler: h, timeout: null, retry: {limit: ~}}\n",
			want: builtin,
		},
		{
			name: "template defaults",
			src:  "defaults: {timeout: 30s, retryable: false}\nsteps:\n  - {name: a, handler: h}\n",
			want: resolved{30 * time.Second, false, policy(func(p *retry.Policy) { p.Limit = 1 })},
		},
		{
			name: "step beats defaults",
			src:  "defaults: {timeout: 30s, retryable: false}\nsteps:\n  - {name: a, handler: h, timeout: 1h, retryable: true}\n",
			want: resolved{time.Hour, true, retry.Default()},
		},
		{
			name: "retry merged field by field",
			src: "defaults: {retry: {limit: 7, backoff: {initial: 2s, jitter: 0}}}\n" +
				"steps:\n  - {name: a, handler: h, retry: {backoff: {initial: 3s, max: 1m}}}\n",
			want: resolved{5 * time.Minute, true, retry.Policy{Limit: 7, Initial: 3 * time.Second, Multiplier: 2, Max: time.Minute, Jitter: 0}},
		},
		{
			name: "retryable false means one attempt whatever the limit",
			src:  "steps:\n  - {name: a, handler: h, retryable: false, retry: {limit: 9}}\n",
			want: resolved{5 * time.Minute, false, policy(func(p *retry.Policy) { p.Limit = 1 })},
		},
		{
			name: "bounds are inclusive",
			src: "concurrency: 10000\nsteps:\n  - {name: a, handler: h, timeout: 24h, " +
				"retry: {limit: 100, backoff: {initial: 24h, max: 24h, multiplier: 10, jitter: 1}}}\n",
			want: resolved{24 * time.Hour, true, retry.Policy{Limit: 100, Initial: 24 * time.Hour, Multiplier: 10, Max: 24 * time.Hour, Jitter: 1}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := mustParse(t, header+tc.src, ParseOptions{}).Steps[0]
			if diff := cmp.Diff(tc.want, resolved{s.Timeout, s.Retryable, s.Retry}); diff != "" {
				t.Errorf("resolved step mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTemplateDefaults(t *testing.T) {
	t.Parallel()
	tpl := mustParse(t, header+"steps:\n  - {name: a, handler: h}\n", ParseOptions{})
	want := &Template{
		Namespace: "ns", Name: "tpl", Version: "1.0.0",
		IdentityStrategy: IdentityAlwaysUnique,
		Steps: []Step{{
			Index: 0, Name: "a", Handler: "h",
			Retryable: true, Retry: retry.Default(), Timeout: 5 * time.Minute,
		}},
	}
	if diff := cmp.Diff(want, tpl, ignoreUnexported, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("template mismatch (-want +got):\n%s", diff)
	}
	if tpl.ContextSchema != nil || tpl.Steps[0].Config != nil {
		t.Errorf("ContextSchema = %s, Config = %s, want both nil", tpl.ContextSchema, tpl.Steps[0].Config)
	}
}

func TestOverrideMerging(t *testing.T) {
	t.Parallel()
	src := header + `
defaults:
  timeout: 10s
  retry: {limit: 2, backoff: {initial: 1s, max: 1m}}
steps:
  - name: a
    description: base
    handler: h
    config:
      url: http://base
      headers: {Accept: json, X-Base: "1"}
      list: [1, 2, 3]
      nested: {keep: true, deep: {x: 1, y: 2}}
    retry: {backoff: {initial: 2s}}
  - name: b
    handler: h
    depends_on: [a]
environments:
  prod:
    defaults:
      retry: {backoff: {max: 10m}}
      retryable: false
    steps:
      - name: a
        description: overridden
        config:
          headers: {X-Base: "2", X-Prod: "1"}
          list: [9]
          nested: {deep: {y: 20}}
          extra: null
        retry: {limit: 5}
        retryable: true
      - name: b
        handler: prod_handler
        config: {only: prod}
        timeout: 1m
`
	tpl := mustParse(t, src, ParseOptions{Environment: "prod"})
	a, b := tpl.Steps[0], tpl.Steps[1]
	wantConfig := `{"extra":null,"headers":{"Accept":"json","X-Base":"2","X-Prod":"1"},"list":[9],"nested":{"deep":{"x":1,"y":20},"keep":true},"url":"http://base"}`
	if got := string(a.Config); got != wantConfig {
		t.Errorf("a.Config = %s\nwant %s", got, wantConfig)
	}
	if a.Description != "overridden" {
		t.Errorf("a.Description = %q, want overridden", a.Description)
	}
	wantA := retry.Policy{Limit: 5, Initial: 2 * time.Second, Multiplier: 2, Max: 10 * time.Minute, Jitter: 0.1}
	if diff := cmp.Diff(wantA, a.Retry); diff != "" || !a.Retryable || a.Timeout != 10*time.Second {
		t.Errorf("a: retryable %v timeout %v retry diff (-want +got):\n%s", a.Retryable, a.Timeout, diff)
	}
	if b.Handler != "prod_handler" || string(b.Config) != `{"only":"prod"}` || b.Timeout != time.Minute || b.Retryable || b.Retry.Limit != 1 {
		t.Errorf("b = handler %q config %s timeout %v retryable %v limit %d, want prod_handler {\"only\":\"prod\"} 1m0s false 1",
			b.Handler, b.Config, b.Timeout, b.Retryable, b.Retry.Limit)
	}
	if diff := cmp.Diff([]string{"a"}, b.DependsOn); diff != "" {
		t.Errorf("b.DependsOn changed by the override (-want +got):\n%s", diff)
	}

	// Without the environment the base values stand.
	base := mustParse(t, src, ParseOptions{})
	if got, want := string(base.Steps[0].Config), `{"headers":{"Accept":"json","X-Base":"1"},"list":[1,2,3],"nested":{"deep":{"x":1,"y":2},"keep":true},"url":"http://base"}`; got != want {
		t.Errorf("base a.Config = %s\nwant %s", got, want)
	}
}

func TestYAMLFeatures(t *testing.T) {
	t.Parallel()
	src := header + `
defaults: &defaults
  timeout: 45s
steps:
  - &step
    name: a
    handler: h
    config: &cfg
      script: |
        echo one
        echo two
      folded: >
        one
        two
      quoted: !!str 123
      float: !!float 2
      big: 18446744073709551615
      neg: -5
      hex: 0x10
      yes: yes
      empty: {}
  - <<: *step
    name: b
    config:
      <<: *cfg
      extra: 1
`
	tpl := mustParse(t, src, ParseOptions{})
	a, b := tpl.Steps[0], tpl.Steps[1]
	want := `{"big":18446744073709551615,"empty":{},"float":2,"folded":"one two\n","hex":16,"neg":-5,"quoted":"123","script":"echo one\necho two\n","yes":"yes"}`
	if got := string(a.Config); got != want {
		t.Errorf("a.Config = %s\nwant %s", got, want)
	}
	wantB := strings.Replace(want, `"empty":{},`, `"empty":{},"extra":1,`, 1)
	if got := string(b.Config); got != wantB {
		t.Errorf("b.Config = %s\nwant %s", got, wantB)
	}
	if b.Handler != "h" || b.Timeout != 45*time.Second {
		t.Errorf("b: handler %q timeout %v, want h (merged from the step anchor) and 45s (defaults)", b.Handler, b.Timeout)
	}
}

func TestParseFileErrors(t *testing.T) {
	t.Parallel()
	_, err := ParseFile(filepath.Join(t.TempDir(), "missing.yaml"), ParseOptions{})
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ParseFile(missing) = %v, want an error wrapping os.ErrNotExist", err)
	}
}

func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	tpl := mustParseFile(t, "testdata/order.yaml", ParseOptions{})
	done := make(chan error)
	for range 8 {
		go func() {
			var err error
			for range 50 {
				if e := tpl.ValidateContext(json.RawMessage(`{"order_id": 1}`)); e != nil {
					err = e
				}
				_ = tpl.Digest()
			}
			done <- err
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Errorf("ValidateContext: %v", err)
		}
	}
}

package template

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestValidateContext(t *testing.T) {
	t.Parallel()
	withSchema := mustParseFile(t, "testdata/order.yaml", ParseOptions{})
	without := mustParse(t, header+"steps:\n  - {name: a, handler: h}\n", ParseOptions{})
	tests := []struct {
		name string
		tpl  *Template
		ctx  string
		want []string // nil: valid
	}{
		{"valid", withSchema, `{"order_id": 42}`, nil},
		{"valid with extra keys", withSchema, `{"order_id": 42, "note": "x", "email": "a@b.example"}`, nil},
		{"wrong type", withSchema, `{"order_id": "42"}`, []string{"/order_id: expected integer, but got string"}},
		{"missing property", withSchema, `{}`, []string{"(root): missing property 'order_id'"}},
		{"not an object", withSchema, `[1]`, []string{"(root): expected object, but got array"}},
		{"format is asserted", withSchema, `{"order_id": 1, "email": "nope"}`, []string{"/email: 'nope' is not valid email: missing @"}},
		{"every problem, sorted", withSchema, `{"order_id": 1.5, "email": 3}`, []string{
			"/email: expected string, but got number",
			"/order_id: expected integer, but got number",
		}},
		{"not JSON", withSchema, `{"order_id": 42`, []string{"not valid JSON: unexpected EOF"}},
		{"trailing data", withSchema, `{"order_id": 42} {}`, []string{"not valid JSON: invalid character after top-level value"}},
		{"empty", withSchema, ``, []string{"not valid JSON: empty input"}},
		{"no schema: object", without, `{"anything": [1, 2]}`, nil},
		{"no schema: scalar", without, `3`, nil},
		{"no schema: null", without, `null`, nil},
		{"no schema: still JSON", without, `{anything}`, []string{"not valid JSON: invalid character 'a' looking for beginning of object key string"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.tpl.ValidateContext(json.RawMessage(tc.ctx))
			if tc.want == nil {
				if err != nil {
					t.Errorf("ValidateContext(%s) = %v, want nil", tc.ctx, err)
				}
				return
			}
			var ce *ContextError
			if !errors.As(err, &ce) {
				t.Fatalf("ValidateContext(%s) = %v (%T), want *ContextError", tc.ctx, err, err)
			}
			if diff := cmp.Diff(tc.want, ce.Problems); diff != "" {
				t.Errorf("problems mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestContextErrorMessage(t *testing.T) {
	t.Parallel()
	tpl := mustParseFile(t, "testdata/order.yaml", ParseOptions{})
	err := tpl.ValidateContext(json.RawMessage(`{"order_id": "x", "email": 1}`))
	want := "invalid task context: /email: expected string, but got number; /order_id: expected integer, but got string"
	if err == nil || err.Error() != want {
		t.Errorf("error = %v, want %q", err, want)
	}
}

func TestValidateEvent(t *testing.T) {
	t.Parallel()
	tpl := mustParseFile(t, "testdata/order.yaml", ParseOptions{})
	tests := []struct {
		name, event, payload string
		want                 []string
	}{
		{"matches schema", "order.placed", `{"order_id": 1}`, nil},
		{"does not match schema", "order.placed", `{"id": 1}`, []string{"(root): missing property 'order_id'"}},
		{"no schema: any JSON", "order.noted", `"free text"`, nil},
		{"no schema: still JSON", "order.noted", `?`, []string{"not valid JSON: invalid character '?' looking for beginning of value"}},
		{"undeclared", "order.shipped", `{}`, []string{"the template ecommerce/process_order@1.0.0 does not declare this event"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tpl.ValidateEvent(tc.event, json.RawMessage(tc.payload))
			if tc.want == nil {
				if err != nil {
					t.Errorf("ValidateEvent(%s, %s) = %v, want nil", tc.event, tc.payload, err)
				}
				return
			}
			var ee *EventError
			if !errors.As(err, &ee) {
				t.Fatalf("ValidateEvent(%s, %s) = %v (%T), want *EventError", tc.event, tc.payload, err, err)
			}
			if ee.Name != tc.event {
				t.Errorf("EventError.Name = %q, want %q", ee.Name, tc.event)
			}
			if diff := cmp.Diff(tc.want, ee.Problems); diff != "" {
				t.Errorf("problems mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSchemaDraftAndRefs(t *testing.T) {
	t.Parallel()
	// Local $ref and $defs work; draft 2020-12 is the default (prefixItems
	// is a 2020-12 keyword); $schema may pick another draft.
	src := header + `
context_schema:
  $defs:
    id: {type: integer, minimum: 1}
  type: object
  properties:
    order_id: {$ref: "#/$defs/id"}
    pair: {type: array, prefixItems: [{type: string}, {type: integer}]}
events:
  - name: legacy.event
    schema:
      $schema: http://json-schema.org/draft-07/schema#
      type: array
      items: [{type: string}]
steps:
  - {name: a, handler: h}
`
	tpl := mustParse(t, src, ParseOptions{})
	err := tpl.ValidateContext(json.RawMessage(`{"order_id": 0, "pair": ["a", "b"]}`))
	var ce *ContextError
	if !errors.As(err, &ce) {
		t.Fatalf("ValidateContext = %v, want *ContextError", err)
	}
	want := []string{"/order_id: minimum: got 0, want 1", "/pair/1: expected integer, but got string"}
	if diff := cmp.Diff(want, ce.Problems); diff != "" {
		t.Errorf("problems mismatch (-want +got):\n%s", diff)
	}
	if err := tpl.ValidateEvent("legacy.event", json.RawMessage(`["a", 1]`)); err != nil {
		t.Errorf("draft-07 tuple items: %v", err)
	}
	if err := tpl.ValidateEvent("legacy.event", json.RawMessage(`[1]`)); err == nil {
		t.Errorf("draft-07 tuple items accepted [1]")
	}
}

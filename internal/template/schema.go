package template

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	schemakind "github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// schemaBaseURL names the schemas of a template for the compiler; it never
// leaves the process.
const schemaBaseURL = "tasker://template/"

// noLoader refuses to load schemas: a template's schemas must be
// self-contained (no $ref to files or URLs). The JSON Schema meta-schemas
// are built into the compiler and still load.
type noLoader struct{}

func (noLoader) Load(string) (any, error) {
	return nil, errors.New("schemas must be self-contained (no $ref to files or URLs)")
}

// compileSchema compiles the JSON Schema s (draft 2020-12 unless it says
// otherwise through $schema, formats asserted) with a compiler of its own,
// and returns it with its canonical JSON. Problems are located inside the
// schema's YAML when possible.
func compileSchema(name string, s opt[any], r *reporter) (*jsonschema.Schema, json.RawMessage) {
	raw, err := canonicalJSON(s.v)
	if err != nil {
		r.addAt(s.at, "cannot encode the schema as JSON: %v", err)
		return nil, nil
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		r.addAt(s.at, "cannot decode the schema: %v", err)
		return nil, nil
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	c.UseLoader(noLoader{})
	url := schemaBaseURL + name
	if err := c.AddResource(url, doc); err != nil {
		r.addAt(s.at, "invalid JSON Schema: %v", err)
		return nil, nil
	}
	sch, err := c.Compile(url)
	if err == nil {
		return sch, raw
	}
	var sve *jsonschema.SchemaValidationError
	var ve *jsonschema.ValidationError
	if errors.As(err, &sve) && errors.As(sve.Err, &ve) {
		// The meta-schema's alternatives (anyOf) fail together; the first
		// failure at each place is the telling one.
		p := message.NewPrinter(language.English)
		seen := map[string]bool{}
		for _, leaf := range leafErrors(ve) {
			ptr := pointer(leaf.InstanceLocation)
			if seen[ptr] {
				continue
			}
			seen[ptr] = true
			at := locateInside(s.at, leaf.InstanceLocation)
			r.addAt(at, "invalid JSON Schema: %s", describeKind(leaf.ErrorKind, p))
		}
		return nil, nil
	}
	r.addAt(s.at, "invalid JSON Schema: %s", strings.ReplaceAll(err.Error(), schemaBaseURL, ""))
	return nil, nil
}

// locateInside follows a JSON pointer's tokens from the schema's node as
// far as the node tree goes.
func locateInside(at loc, tokens []string) loc {
	for _, tok := range tokens {
		n := at.node
		if n == nil {
			break
		}
		switch n.kind {
		case kindMap:
			e := n.get(tok)
			if e == nil {
				return at
			}
			at = locOf(e.value, at.path.child(tok))
		case kindSeq:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(n.items) {
				return at
			}
			at = locOf(n.items[i], at.path.at(i))
		default:
			return at
		}
	}
	return at
}

// leafErrors returns the errors of a validation tree that have no causes:
// the concrete failures.
func leafErrors(root *jsonschema.ValidationError) []*jsonschema.ValidationError {
	var out []*jsonschema.ValidationError
	stack := []*jsonschema.ValidationError{root}
	for len(stack) > 0 {
		e := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if len(e.Causes) == 0 {
			out = append(out, e)
			continue
		}
		for i := len(e.Causes) - 1; i >= 0; i-- {
			stack = append(stack, e.Causes[i])
		}
	}
	return out
}

// describeKind words a validation failure.
func describeKind(k jsonschema.ErrorKind, p *message.Printer) string {
	if t, ok := k.(*schemakind.Type); ok {
		return fmt.Sprintf("expected %s, but got %s", strings.Join(t.Want, " or "), t.Got)
	}
	return k.LocalizedString(p)
}

// validate checks the JSON document data against sch (nil: any JSON
// value) and returns its problems as "POINTER: MESSAGE" lines, sorted.
func validate(sch *jsonschema.Schema, data []byte) []string {
	if len(bytes.TrimSpace(data)) == 0 {
		return []string{"not valid JSON: empty input"}
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return []string{"not valid JSON: " + err.Error()}
	}
	if sch == nil {
		return nil
	}
	err = sch.Validate(v)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return []string{err.Error()}
	}
	p := message.NewPrinter(language.English)
	var out []string
	for _, leaf := range leafErrors(ve) {
		out = append(out, pointer(leaf.InstanceLocation)+": "+describeKind(leaf.ErrorKind, p))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// pointer formats tokens as a JSON pointer (RFC 6901); the whole document
// is "(root)" rather than the empty string.
func pointer(tokens []string) string {
	if len(tokens) == 0 {
		return "(root)"
	}
	var b strings.Builder
	for _, t := range tokens {
		b.WriteByte('/')
		t = strings.ReplaceAll(t, "~", "~0")
		b.WriteString(strings.ReplaceAll(t, "/", "~1"))
	}
	return b.String()
}

// ValidateContext checks a task context: it must be JSON and, when the
// template has a context schema, match it. Failures are *ContextError.
func (t *Template) ValidateContext(ctx json.RawMessage) error {
	if problems := validate(t.contextSchema, ctx); len(problems) > 0 {
		return &ContextError{Problems: problems}
	}
	return nil
}

// ValidateEvent checks a custom event: the template must declare name and,
// when the declaration has a schema, payload must match it; the payload
// must be JSON in any case. Failures are *EventError.
func (t *Template) ValidateEvent(name string, payload json.RawMessage) error {
	sch, ok := t.events[name]
	if !ok {
		return &EventError{Name: name, Problems: []string{fmt.Sprintf("the template %s does not declare this event", t.Key())}}
	}
	if problems := validate(sch, payload); len(problems) > 0 {
		return &EventError{Name: name, Problems: problems}
	}
	return nil
}

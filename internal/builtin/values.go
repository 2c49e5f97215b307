package builtin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"text/template/parse"

	"github.com/tasker-go/tasker/internal/handler"
)

// Values in a step's config may hold Go text/template actions that read
// the step's data:
//
//	.context                 the task context
//	.steps.NAME.results      the result of the dependency NAME
//	.task.id, .task.namespace, .task.name, .task.version
//	.step.id, .step.name, .step.attempt
//
// A string that is one action, such as "{{ .steps.price.results.total }}",
// takes the value's JSON type (a number stays a number in a JSON body); any
// other string is rendered as text, objects and arrays as JSON. A missing
// key is an error; use index (which yields nothing for a missing key) with
// default for optional values: {{ default "EUR" (index .context "currency") }}.

// valueFuncs are the functions templates may call besides text/template's
// own (index, len, printf, urlquery, …).
func valueFuncs(capture func(any) string) template.FuncMap {
	return template.FuncMap{
		"json": func(v any) (string, error) {
			b, err := json.Marshal(v)
			return string(b), err
		},
		"pathescape":  url.PathEscape,
		"queryescape": url.QueryEscape,
		"default": func(def, v any) any {
			if isEmpty(v) {
				return def
			}
			return v
		},
		"__capture": capture,
	}
}

func isEmpty(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.String, reflect.Map, reflect.Slice:
		return rv.Len() == 0
	}
	return false
}

// jsonObject and jsonArray print as JSON when rendered into text.
type (
	jsonObject map[string]any
	jsonArray  []any
)

func (o jsonObject) String() string { return mustJSON(map[string]any(o)) }
func (a jsonArray) String() string  { return mustJSON([]any(a)) }

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%v", v)
	}
	return string(b)
}

// decodeValue decodes JSON keeping numbers exact, with objects and arrays
// as jsonObject and jsonArray.
func decodeValue(raw json.RawMessage) (any, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return wrap(v), nil
}

func wrap(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, x := range t {
			t[k] = wrap(x)
		}
		return jsonObject(t)
	case []any:
		for i, x := range t {
			t[i] = wrap(x)
		}
		return jsonArray(t)
	}
	return v
}

// renderData is what config templates see.
func renderData(in *handler.Input) (map[string]any, error) {
	ctx, err := decodeValue(in.Context)
	if err != nil {
		return nil, fmt.Errorf("task context: %w", err)
	}
	steps := jsonObject{}
	for name, raw := range in.Dependencies {
		res, err := decodeValue(raw)
		if err != nil {
			return nil, fmt.Errorf("result of %s: %w", name, err)
		}
		steps[name] = jsonObject{"results": res}
	}
	return map[string]any{
		"context": ctx,
		"steps":   steps,
		"task":    jsonObject{"id": in.TaskID, "namespace": in.Namespace, "name": in.TaskName, "version": in.Version},
		"step":    jsonObject{"id": in.StepID, "name": in.StepName, "attempt": in.Attempt},
	}, nil
}

// parseValue parses one config string as a template. whole reports a
// string that is a single action.
func parseValue(path, src string, capture func(any) string) (*template.Template, bool, error) {
	t, err := template.New(path).Option("missingkey=error").Funcs(valueFuncs(capture)).Parse(src)
	if err != nil {
		return nil, false, fmt.Errorf("http config: field %q: %s", path, cleanTemplateError(err))
	}
	nodes := t.Tree.Root.Nodes
	whole := len(nodes) == 1 && nodes[0].Type() == parse.NodeAction
	if whole {
		// Pipe the action's value into __capture, which keeps it as is.
		a := nodes[0].(*parse.ActionNode)
		a.Pipe.Cmds = append(a.Pipe.Cmds, &parse.CommandNode{NodeType: parse.NodeCommand,
			Args: []parse.Node{&parse.IdentifierNode{NodeType: parse.NodeIdentifier, Ident: "__capture"}}})
	}
	return t, whole, nil
}

// render evaluates one config string: the value of a single action, else
// the rendered text.
func render(path, src string, data map[string]any) (any, error) {
	if !strings.Contains(src, "{{") {
		return src, nil
	}
	var captured any
	t, whole, err := parseValue(path, src, func(v any) string { captured = v; return "" })
	if err != nil {
		return nil, err
	}
	var out strings.Builder
	if err := t.Execute(&out, data); err != nil {
		return nil, fmt.Errorf("http config: field %q: %s", path, cleanTemplateError(err))
	}
	if whole {
		return captured, nil
	}
	if strings.Contains(out.String(), "<no value>") && !strings.Contains(src, "<no value>") {
		return nil, fmt.Errorf("http config: field %q: a value it uses is null", path)
	}
	return out.String(), nil
}

// renderString renders a config string as text.
func renderString(path, src string, data map[string]any) (string, error) {
	v, err := render(path, src, data)
	if err != nil {
		return "", err
	}
	switch t := v.(type) {
	case string:
		return t, nil
	case nil:
		return "", fmt.Errorf("http config: field %q: the value is null", path)
	case json.Number:
		return t.String(), nil
	case bool:
		return strconv.FormatBool(t), nil
	}
	return mustJSON(v), nil
}

// renderJSON renders every string of a JSON document.
func renderJSON(path string, raw json.RawMessage, data map[string]any) (json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("http config: field %q: %w", path, err)
	}
	var walk func(p string, v any) (any, error)
	walk = func(p string, v any) (any, error) {
		switch t := v.(type) {
		case string:
			return render(p, t, data)
		case map[string]any:
			keys := make([]string, 0, len(t))
			for k := range t {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for _, k := range keys {
				x, err := walk(p+"."+k, t[k])
				if err != nil {
					return nil, err
				}
				t[k] = x
			}
		case []any:
			for i, x := range t {
				y, err := walk(fmt.Sprintf("%s[%d]", p, i), x)
				if err != nil {
					return nil, err
				}
				t[i] = y
			}
		}
		return v, nil
	}
	out, err := walk(path, doc)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("http config: field %q: %w", path, err)
	}
	return b, nil
}

var templateErrorPrefix = regexp.MustCompile(`^template: [^:]*:(\d+:)?(\d+:)? ?(executing "[^"]*" )?`)

// cleanTemplateError drops text/template's prefix, which names the
// template by its internal name.
func cleanTemplateError(err error) string {
	return templateErrorPrefix.ReplaceAllString(err.Error(), "")
}

var stepRefRE = regexp.MustCompile(`\.steps\.([A-Za-z0-9_]+)`)

// checkValues parses every template string of a config and checks that
// the steps it reads are dependencies. strings maps field paths to
// strings.
func checkValues(strs map[string]string, deps []string) error {
	var errs []error
	for _, path := range sortedKeys(strs) {
		src := strs[path]
		if !strings.Contains(src, "{{") {
			continue
		}
		if _, _, err := parseValue(path, src, func(any) string { return "" }); err != nil {
			errs = append(errs, err)
			continue
		}
		for _, m := range stepRefRE.FindAllStringSubmatch(src, -1) {
			if !slices.Contains(deps, m[1]) {
				errs = append(errs, fmt.Errorf("http config: field %q: reads the result of %q, which is not in this step's depends_on", path, m[1]))
			}
		}
	}
	return errors.Join(errs...)
}

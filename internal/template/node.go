package template

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

// node is a YAML (or JSON) value with its position: the parsed document as
// the validator walks it. Aliases are resolved and merge keys applied, so
// an anchored node may be shared by several parents.
type node struct {
	kind      kind
	line, col int
	// value holds a scalar: nil, bool, int64, uint64, float64 or string.
	value any
	// raw is a YAML number as written ("1.0"), for messages.
	raw     string
	entries []entry // kindMap, in document order
	items   []*node // kindSeq
	// weight is the number of nodes this one expands to, aliases included;
	// it guards against alias bombs.
	weight int64
}

// entry is one key of a mapping.
type entry struct {
	key string
	// badKey is the source text of a key that is not a string; key is
	// empty then.
	badKey    string
	line, col int
	value     *node
}

type kind uint8

const (
	kindNull kind = iota
	kindBool
	kindInt
	kindFloat
	kindString
	kindMap
	kindSeq
)

func (k kind) String() string {
	return [...]string{"null", "boolean", "integer", "number", "string", "mapping", "list"}[k]
}

// describe names a node's kind and, for scalars, its value, for messages.
func (n *node) describe() string {
	switch n.kind {
	case kindNull, kindMap, kindSeq:
		return n.kind.String()
	case kindString:
		return fmt.Sprintf("string %q", n.value)
	default:
		return fmt.Sprintf("%s %s", n.kind, n.text())
	}
}

// text returns a scalar as written when known.
func (n *node) text() string {
	if n.raw != "" {
		return n.raw
	}
	return fmt.Sprint(n.value)
}

// get returns the entry for key, or nil.
func (n *node) get(key string) *entry {
	if n == nil || n.kind != kindMap {
		return nil
	}
	for i := range n.entries {
		if n.entries[i].badKey == "" && n.entries[i].key == key {
			return &n.entries[i]
		}
	}
	return nil
}

// isNull reports whether n is absent or an explicit null.
func (n *node) isNull() bool { return n == nil || n.kind == kindNull }

// path is a location inside the document, built as a linked list so that
// walking 10,000 steps allocates no strings until a problem is reported.
type path struct {
	parent *path
	key    string
	index  int // -1 for a key
}

func (p *path) child(key string) *path { return &path{parent: p, key: key, index: -1} }
func (p *path) at(i int) *path         { return &path{parent: p, index: i} }

var simpleKeyRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// String formats the path as "steps[3].depends_on[1]"; keys that are not
// plain words are quoted: config["a.b"].
func (p *path) String() string {
	var elems []*path
	for q := p; q != nil; q = q.parent {
		elems = append(elems, q)
	}
	var b strings.Builder
	for i := len(elems) - 1; i >= 0; i-- {
		e := elems[i]
		switch {
		case e.index >= 0:
			fmt.Fprintf(&b, "[%d]", e.index)
		case !simpleKeyRE.MatchString(e.key):
			fmt.Fprintf(&b, "[%q]", e.key)
		default:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(e.key)
		}
	}
	return b.String()
}

// elems returns the path from the root down.
func (p *path) elems() []*path {
	var out []*path
	for q := p; q != nil; q = q.parent {
		out = append(out, q)
	}
	slices.Reverse(out)
	return out
}

// maxWeight bounds how many nodes a document may expand to through aliases.
const maxWeight = 1_000_000

// parseYAML parses one YAML document into a node tree. Syntax errors and
// problems found while resolving aliases, tags and merge keys are added to
// r; the returned node is nil when nothing usable was parsed.
func parseYAML(data []byte, r *reporter) *node {
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		var se *yaml.SyntaxError
		if errors.As(err, &se) && se.Token != nil && se.Token.Position != nil {
			r.add(se.Token.Position.Line, se.Token.Position.Column, nil, "invalid YAML: %s", se.Message)
		} else {
			r.add(0, 0, nil, "invalid YAML: %s", err)
		}
		return nil
	}
	var docs []*ast.DocumentNode
	for _, d := range f.Docs {
		if d != nil && d.Body != nil {
			docs = append(docs, d)
		}
	}
	if len(docs) == 0 {
		r.add(1, 1, nil, "empty template")
		return nil
	}
	if len(docs) > 1 {
		line, col := position(docs[1].Body)
		r.add(line, col, nil, "a template file holds exactly one YAML document, found %d", len(docs))
		return nil
	}
	c := &converter{r: r, anchors: map[string]*node{}}
	root := c.convert(docs[0].Body, nil)
	if root != nil && root.weight > maxWeight {
		r.add(root.line, root.col, nil, "the document expands to more than %d values through aliases", maxWeight)
		return nil
	}
	return root
}

// converter turns goccy/go-yaml's AST into nodes.
type converter struct {
	r       *reporter
	anchors map[string]*node
}

// position returns an AST node's line and column; for a block mapping, the
// position of its first key.
func position(n ast.Node) (int, int) {
	switch v := n.(type) {
	case *ast.MappingNode:
		if len(v.Values) > 0 {
			return position(v.Values[0].Key)
		}
	case *ast.MappingValueNode:
		return position(v.Key)
	case *ast.AnchorNode:
		if v.Value != nil {
			return position(v.Value)
		}
	case *ast.TagNode:
		return tokenPos(v.Start)
	}
	return tokenPos(n.GetToken())
}

func tokenPos(tk *token.Token) (int, int) {
	if tk == nil || tk.Position == nil {
		return 0, 0
	}
	return tk.Position.Line, tk.Position.Column
}

func (c *converter) convert(n ast.Node, p *path) *node {
	if n == nil {
		return &node{kind: kindNull, weight: 1}
	}
	line, col := position(n)
	out := &node{line: line, col: col, weight: 1}
	switch v := n.(type) {
	case *ast.NullNode:
		out.kind = kindNull
	case *ast.BoolNode:
		out.kind, out.value = kindBool, v.Value
	case *ast.IntegerNode:
		out.raw = scalarText(v)
		switch x := v.Value.(type) {
		case int64:
			out.kind, out.value = kindInt, x
		case uint64:
			out.kind, out.value = kindInt, x
			if x <= math.MaxInt64 {
				out.value = int64(x)
			}
		default:
			out.kind, out.value = kindString, v.Token.Value
		}
	case *ast.FloatNode:
		out.kind, out.value, out.raw = kindFloat, v.Value, scalarText(v)
	case *ast.InfinityNode:
		out.kind, out.value = kindFloat, v.Value
	case *ast.NanNode:
		out.kind, out.value = kindFloat, math.NaN()
	case *ast.StringNode:
		out.kind, out.value = kindString, v.Value
	case *ast.LiteralNode:
		out.kind, out.value = kindString, v.Value.Value
	case *ast.MappingNode:
		return c.mapping(out, v.Values, p)
	case *ast.MappingValueNode:
		return c.mapping(out, []*ast.MappingValueNode{v}, p)
	case *ast.SequenceNode:
		out.kind = kindSeq
		out.items = make([]*node, len(v.Values))
		for i, item := range v.Values {
			out.items[i] = c.convert(item, p.at(i))
			out.weight = addWeight(out.weight, out.items[i].weight)
		}
	case *ast.AnchorNode:
		val := c.convert(v.Value, p)
		if v.Name != nil {
			c.anchors[scalarText(v.Name)] = val
		}
		return val
	case *ast.AliasNode:
		var name string
		if v.Value != nil {
			name = scalarText(v.Value)
		}
		if val, ok := c.anchors[name]; ok {
			return val
		}
		c.r.add(line, col, p, "unknown alias %q", name)
		out.kind = kindNull
	case *ast.TagNode:
		return c.tagged(v, out, p)
	default:
		c.r.add(line, col, p, "unsupported YAML node %s", n.Type())
		out.kind = kindNull
	}
	return out
}

// mapping converts the key/value pairs of a mapping, then applies merge
// keys ("<<: *base"): merged keys never replace explicit ones.
func (c *converter) mapping(out *node, values []*ast.MappingValueNode, p *path) *node {
	out.kind = kindMap
	out.entries = make([]entry, 0, len(values))
	var merges []*node
	for _, mv := range values {
		if mv.Key.IsMergeKey() {
			merges = append(merges, c.convert(mv.Value, p.child("<<")))
			continue
		}
		line, col := position(mv.Key)
		e := entry{line: line, col: col}
		key := c.convert(unwrapKey(mv.Key), nil)
		if key.kind == kindString {
			e.key = key.value.(string)
		} else {
			e.badKey = strings.TrimSpace(mv.Key.String())
		}
		vp := p.child(e.key)
		if e.badKey != "" {
			vp = p.child(e.badKey)
		}
		e.value = c.convert(mv.Value, vp)
		out.weight = addWeight(out.weight, e.value.weight)
		out.entries = append(out.entries, e)
	}
	for _, m := range merges {
		var sources []*node
		switch m.kind {
		case kindMap:
			sources = []*node{m}
		case kindSeq:
			sources = m.items
		}
		for _, src := range sources {
			if src.kind != kindMap {
				c.r.add(m.line, m.col, p.child("<<"), "a merge key (<<) takes a mapping or a list of mappings, got %s", src.describe())
				continue
			}
			for _, e := range src.entries {
				if e.badKey == "" && out.get(e.key) != nil {
					continue
				}
				out.entries = append(out.entries, e)
				out.weight = addWeight(out.weight, e.value.weight)
			}
		}
	}
	return out
}

func unwrapKey(k ast.MapKeyNode) ast.Node {
	if mk, ok := k.(*ast.MappingKeyNode); ok {
		return mk.Value
	}
	return k
}

// tagged applies the standard YAML tags; others are rejected.
func (c *converter) tagged(v *ast.TagNode, out *node, p *path) *node {
	tag := v.Start.Value
	val := c.convert(v.Value, p)
	want := map[string]kind{
		"!!null": kindNull, "!!bool": kindBool, "!!int": kindInt, "!!float": kindFloat,
		"!!map": kindMap, "!!seq": kindSeq,
	}
	switch k, ok := want[tag]; {
	case tag == "!!str":
		if val.kind == kindMap || val.kind == kindSeq {
			c.r.add(out.line, out.col, p, "tag !!str needs a scalar, got %s", val.kind)
			return val
		}
		if val.kind == kindString {
			return val
		}
		s := *val
		s.kind, s.value = kindString, scalarText(v.Value)
		return &s
	case tag == "!!float" && val.kind == kindInt:
		s := *val
		s.kind, s.value = kindFloat, toFloat(val.value)
		return &s
	case ok:
		if val.kind != k {
			c.r.add(out.line, out.col, p, "tag %s does not match the value, a %s", tag, val.kind)
		}
		return val
	default:
		c.r.add(out.line, out.col, p, "unsupported YAML tag %s", tag)
		return val
	}
}

func scalarText(n ast.Node) string {
	if tk := n.GetToken(); tk != nil {
		return tk.Value
	}
	return ""
}

func addWeight(a, b int64) int64 {
	if a+b > maxWeight {
		return maxWeight + 1
	}
	return a + b
}

func toFloat(v any) float64 {
	switch x := v.(type) {
	case int64:
		return float64(x)
	case uint64:
		return float64(x)
	case float64:
		return x
	}
	return math.NaN()
}

// toJSONValue converts a node to a value encoding/json can marshal,
// reporting keys that are not strings and numbers JSON cannot hold.
func toJSONValue(n *node, p *path, r *reporter) any {
	switch n.kind {
	case kindMap:
		m := make(map[string]any, len(n.entries))
		for _, e := range n.entries {
			if e.badKey != "" {
				r.add(e.line, e.col, p.child(e.badKey), "key %s must be a string (quote it)", e.badKey)
				continue
			}
			m[e.key] = toJSONValue(e.value, p.child(e.key), r)
		}
		return m
	case kindSeq:
		s := make([]any, len(n.items))
		for i, item := range n.items {
			s[i] = toJSONValue(item, p.at(i), r)
		}
		return s
	case kindFloat:
		f := n.value.(float64)
		if math.IsInf(f, 0) || math.IsNaN(f) {
			r.add(n.line, n.col, p, "%v cannot be represented in JSON", f)
			return nil
		}
		return f
	default:
		return n.value
	}
}

// fromJSONValue builds a node from a value decoded by encoding/json with
// UseNumber. Mapping keys are sorted since JSON objects have no order.
func fromJSONValue(v any) *node {
	out := &node{weight: 1}
	switch x := v.(type) {
	case nil:
		out.kind = kindNull
	case bool:
		out.kind, out.value = kindBool, x
	case string:
		out.kind, out.value = kindString, x
	case json.Number:
		out.kind, out.value = numberValue(x)
	case map[string]any:
		out.kind = kindMap
		keys := slices.Sorted(func(yield func(string) bool) {
			for k := range x {
				if !yield(k) {
					return
				}
			}
		})
		for _, k := range keys {
			child := fromJSONValue(x[k])
			out.entries = append(out.entries, entry{key: k, value: child})
			out.weight = addWeight(out.weight, child.weight)
		}
	case []any:
		out.kind = kindSeq
		for _, item := range x {
			child := fromJSONValue(item)
			out.items = append(out.items, child)
			out.weight = addWeight(out.weight, child.weight)
		}
	}
	return out
}

// numberValue keeps integers exact and turns everything else into float64.
func numberValue(num json.Number) (kind, any) {
	if i, err := strconv.ParseInt(num.String(), 10, 64); err == nil {
		return kindInt, i
	}
	if u, err := strconv.ParseUint(num.String(), 10, 64); err == nil {
		return kindInt, u
	}
	f, _ := num.Float64() // valid JSON numbers only overflow to ±Inf
	return kindFloat, f
}

// decodeJSON decodes one JSON value, numbers as json.Number, rejecting
// trailing data.
func decodeJSON(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("unexpected data after the JSON value")
	}
	return v, nil
}

// canonicalJSON encodes v with sorted keys, normalized numbers and no HTML
// escaping, without a trailing newline.
func canonicalJSON(v any) (json.RawMessage, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(normalizeNumbers(v)); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// normalizeNumbers replaces json.Number values so that 1, 1.0 and 1e0 all
// encode as 1.
func normalizeNumbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		_, val := numberValue(x)
		return val
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = normalizeNumbers(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normalizeNumbers(e)
		}
		return out
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return int64(x)
		}
		return x
	default:
		return v
	}
}

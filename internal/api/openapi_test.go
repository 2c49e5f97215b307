package api_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"maps"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/tasker-go/tasker"
	"github.com/tasker-go/tasker/internal/api"
	"github.com/tasker-go/tasker/internal/auth"
)

// The contract tests of openapi.yaml: the document describes every route
// the server serves and nothing else, it is a structurally valid OpenAPI
// 3.1 document whose schemas compile as JSON Schema 2020-12, the server
// serves it at /openapi.json, and what a real server answers matches it.

// openAPIURL is the URL the document is loaded under in the compiler.
const openAPIURL = "https://tasker.invalid/openapi.json"

var httpMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// oaSpec is the OpenAPI document with a compiler of its schemas.
type oaSpec struct {
	doc      map[string]any
	mu       sync.Mutex
	compiler *jsonschema.Compiler
	compiled map[string]*jsonschema.Schema
}

func loadSpec(t *testing.T) *oaSpec {
	t.Helper()
	raw, err := api.OpenAPI()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	m, ok := doc.(map[string]any)
	if !ok {
		t.Fatalf("the document is a %T, not an object", doc)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	if err := c.AddResource(openAPIURL, doc); err != nil {
		t.Fatal(err)
	}
	return &oaSpec{doc: m, compiler: c, compiled: map[string]*jsonschema.Schema{}}
}

// ptr builds a JSON pointer from its tokens.
func jsonPtr(tokens ...string) string {
	var b strings.Builder
	for _, tok := range tokens {
		b.WriteString("/" + strings.ReplaceAll(strings.ReplaceAll(tok, "~", "~0"), "/", "~1"))
	}
	return b.String()
}

// schema compiles the schema at a JSON pointer of the document, $refs
// into the document's components included.
func (s *oaSpec) schema(p string) (*jsonschema.Schema, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sch, ok := s.compiled[p]; ok {
		return sch, nil
	}
	var frag strings.Builder
	for _, tok := range strings.Split(p, "/")[1:] {
		frag.WriteString("/" + url.PathEscape(tok))
	}
	sch, err := s.compiler.Compile(openAPIURL + "#" + frag.String())
	if err != nil {
		return nil, err
	}
	s.compiled[p] = sch
	return sch, nil
}

// validate validates a JSON value (decoded with json.Number) against the
// schema at p.
func (s *oaSpec) validate(p string, v any) error {
	sch, err := s.schema(p)
	if err != nil {
		return fmt.Errorf("schema %s does not compile: %w", p, err)
	}
	return sch.Validate(v)
}

// lookup returns the value at a JSON pointer.
func (s *oaSpec) lookup(p string) (any, bool) {
	var v any = s.doc
	if p == "" {
		return v, true
	}
	for _, tok := range strings.Split(p, "/")[1:] {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch x := v.(type) {
		case map[string]any:
			var ok bool
			if v, ok = x[tok]; !ok {
				return nil, false
			}
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(x) {
				return nil, false
			}
			v = x[i]
		default:
			return nil, false
		}
	}
	return v, true
}

// object returns the object at p, following local $refs, and its pointer.
func (s *oaSpec) object(p string) (map[string]any, string) {
	for range 10 {
		v, _ := s.lookup(p)
		m, _ := v.(map[string]any)
		ref, ok := m["$ref"].(string)
		if !ok {
			return m, p
		}
		p = strings.TrimPrefix(ref, "#")
	}
	return nil, p
}

// oaOperation is one path and method of the document.
type oaOperation struct {
	method string // upper case
	path   string // path template
	loc    string
	op     map[string]any
}

func (s *oaSpec) operations() []oaOperation {
	var out []oaOperation
	paths, _ := s.doc["paths"].(map[string]any)
	for _, path := range slices.Sorted(maps.Keys(paths)) {
		item, _ := paths[path].(map[string]any)
		for _, m := range httpMethods {
			if op, ok := item[m].(map[string]any); ok {
				out = append(out, oaOperation{method: strings.ToUpper(m), path: path, loc: jsonPtr("paths", path, m), op: op})
			}
		}
	}
	return out
}

// oaParameter is a parameter of an operation, its $ref followed.
type oaParameter struct {
	name, in string
	required bool
	loc      string // of the parameter object
	def      map[string]any
}

// parameters returns the parameters of an operation: the path item's,
// overridden by the operation's (by name and location).
func (s *oaSpec) parameters(o oaOperation) []oaParameter {
	byKey := map[string]oaParameter{}
	var order []string
	for _, base := range []string{jsonPtr("paths", o.path), o.loc} {
		list, _ := s.lookup(base + "/parameters")
		for i := range asArray(list) {
			def, p := s.object(base + jsonPtr("parameters", strconv.Itoa(i)))
			pm := oaParameter{name: fmt.Sprint(def["name"]), in: fmt.Sprint(def["in"]), loc: p, def: def}
			pm.required, _ = def["required"].(bool)
			key := pm.in + ":" + strings.ToLower(pm.name)
			if _, ok := byKey[key]; !ok {
				order = append(order, key)
			}
			byKey[key] = pm
		}
	}
	out := make([]oaParameter, 0, len(order))
	for _, k := range order {
		out = append(out, byKey[k])
	}
	return out
}

func pathTemplateNames(template string) []string {
	var out []string
	for _, m := range regexp.MustCompile(`\{([^}]+)\}`).FindAllStringSubmatch(template, -1) {
		out = append(out, m[1])
	}
	return out
}

// openAPIStructure is a JSON Schema of the structure of an OpenAPI 3.1
// document, for the objects this API's document uses: every object
// refuses keys OpenAPI does not define (extensions x-... allowed). Schema
// objects are checked by compiling them as JSON Schema 2020-12.
const openAPIStructure = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "$id": "https://tasker.invalid/openapi-3.1-structure.json",
  "$ref": "#/$defs/extensible",
  "type": "object",
  "required": ["openapi", "info", "paths"],
  "properties": {
    "openapi": {"type": "string", "pattern": "^3\\.1\\.[0-9]+$"},
    "info": {"$ref": "#/$defs/info"},
    "jsonSchemaDialect": {"type": "string"},
    "servers": {"type": "array", "items": {"$ref": "#/$defs/server"}},
    "paths": {"$ref": "#/$defs/paths"},
    "webhooks": {"type": "object"},
    "components": {"$ref": "#/$defs/components"},
    "security": {"$ref": "#/$defs/security"},
    "tags": {"type": "array", "items": {"$ref": "#/$defs/tag"}},
    "externalDocs": {"$ref": "#/$defs/externalDocs"}
  },
  "unevaluatedProperties": false,
  "$defs": {
    "extensible": {"patternProperties": {"^x-": true}},
    "map": {"type": "object", "propertyNames": {"pattern": "^[a-zA-Z0-9._-]+$"}},
    "info": {
      "$ref": "#/$defs/extensible", "type": "object", "required": ["title", "version"],
      "properties": {
        "title": {"type": "string"}, "summary": {"type": "string"}, "description": {"type": "string"},
        "termsOfService": {"type": "string"}, "contact": {"type": "object"},
        "license": {"type": "object", "required": ["name"]}, "version": {"type": "string"}
      },
      "unevaluatedProperties": false
    },
    "server": {"type": "object", "required": ["url"]},
    "externalDocs": {"type": "object", "required": ["url"]},
    "tag": {
      "$ref": "#/$defs/extensible", "type": "object", "required": ["name"],
      "properties": {"name": {"type": "string"}, "description": {"type": "string"}, "externalDocs": {"$ref": "#/$defs/externalDocs"}},
      "unevaluatedProperties": false
    },
    "security": {"type": "array", "items": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}}},
    "paths": {
      "$ref": "#/$defs/extensible", "type": "object",
      "patternProperties": {"^/": {"$ref": "#/$defs/pathItem"}},
      "unevaluatedProperties": false
    },
    "pathItem": {
      "$ref": "#/$defs/extensible", "type": "object",
      "properties": {
        "summary": {"type": "string"}, "description": {"type": "string"},
        "servers": {"type": "array", "items": {"$ref": "#/$defs/server"}},
        "parameters": {"$ref": "#/$defs/parameters"},
        "get": {"$ref": "#/$defs/operation"}, "put": {"$ref": "#/$defs/operation"},
        "post": {"$ref": "#/$defs/operation"}, "delete": {"$ref": "#/$defs/operation"},
        "options": {"$ref": "#/$defs/operation"}, "head": {"$ref": "#/$defs/operation"},
        "patch": {"$ref": "#/$defs/operation"}, "trace": {"$ref": "#/$defs/operation"}
      },
      "unevaluatedProperties": false
    },
    "operation": {
      "$ref": "#/$defs/extensible", "type": "object", "required": ["operationId", "summary", "responses"],
      "properties": {
        "tags": {"type": "array", "items": {"type": "string"}},
        "summary": {"type": "string"}, "description": {"type": "string"},
        "externalDocs": {"$ref": "#/$defs/externalDocs"},
        "operationId": {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9_]*$"},
        "parameters": {"$ref": "#/$defs/parameters"},
        "requestBody": {"$ref": "#/$defs/requestBodyOrRef"},
        "responses": {"$ref": "#/$defs/responses"},
        "callbacks": {"type": "object"},
        "deprecated": {"type": "boolean"},
        "security": {"$ref": "#/$defs/security"},
        "servers": {"type": "array", "items": {"$ref": "#/$defs/server"}}
      },
      "unevaluatedProperties": false
    },
    "reference": {
      "type": "object", "required": ["$ref"],
      "properties": {"$ref": {"type": "string", "pattern": "^#/"}, "summary": {"type": "string"}, "description": {"type": "string"}},
      "additionalProperties": false
    },
    "parameters": {"type": "array", "items": {"$ref": "#/$defs/parameterOrRef"}},
    "parameterOrRef": {"if": {"type": "object", "required": ["$ref"]}, "then": {"$ref": "#/$defs/reference"}, "else": {"$ref": "#/$defs/parameter"}},
    "parameter": {
      "$ref": "#/$defs/extensible", "type": "object", "required": ["name", "in"],
      "properties": {
        "name": {"type": "string", "minLength": 1}, "in": {"enum": ["query", "header", "path", "cookie"]},
        "description": {"type": "string"}, "required": {"type": "boolean"}, "deprecated": {"type": "boolean"},
        "allowEmptyValue": {"type": "boolean"}, "style": {"type": "string"}, "explode": {"type": "boolean"},
        "allowReserved": {"type": "boolean"}, "schema": {"$ref": "#/$defs/schema"}, "content": {"$ref": "#/$defs/content"},
        "example": true, "examples": {"type": "object"}
      },
      "oneOf": [{"required": ["schema"]}, {"required": ["content"]}],
      "if": {"properties": {"in": {"const": "path"}}},
      "then": {"required": ["required"], "properties": {"required": {"const": true}}},
      "unevaluatedProperties": false
    },
    "requestBodyOrRef": {"if": {"type": "object", "required": ["$ref"]}, "then": {"$ref": "#/$defs/reference"}, "else": {"$ref": "#/$defs/requestBody"}},
    "requestBody": {
      "$ref": "#/$defs/extensible", "type": "object", "required": ["content"],
      "properties": {"description": {"type": "string"}, "content": {"$ref": "#/$defs/content"}, "required": {"type": "boolean"}},
      "unevaluatedProperties": false
    },
    "content": {
      "type": "object", "minProperties": 1,
      "propertyNames": {"pattern": "^[a-z]+/[a-z0-9.+-]+$"},
      "additionalProperties": {"$ref": "#/$defs/mediaType"}
    },
    "mediaType": {
      "$ref": "#/$defs/extensible", "type": "object",
      "properties": {"schema": {"$ref": "#/$defs/schema"}, "example": true, "examples": {"type": "object"}, "encoding": {"type": "object"}},
      "unevaluatedProperties": false
    },
    "responses": {
      "$ref": "#/$defs/extensible", "type": "object", "minProperties": 1,
      "properties": {"default": {"$ref": "#/$defs/responseOrRef"}},
      "patternProperties": {"^[1-5](?:[0-9]{2}|XX)$": {"$ref": "#/$defs/responseOrRef"}},
      "unevaluatedProperties": false
    },
    "responseOrRef": {"if": {"type": "object", "required": ["$ref"]}, "then": {"$ref": "#/$defs/reference"}, "else": {"$ref": "#/$defs/response"}},
    "response": {
      "$ref": "#/$defs/extensible", "type": "object", "required": ["description"],
      "properties": {
        "description": {"type": "string"},
        "headers": {"type": "object", "additionalProperties": {"$ref": "#/$defs/headerOrRef"}},
        "content": {"$ref": "#/$defs/content"},
        "links": {"type": "object"}
      },
      "unevaluatedProperties": false
    },
    "headerOrRef": {"if": {"type": "object", "required": ["$ref"]}, "then": {"$ref": "#/$defs/reference"}, "else": {"$ref": "#/$defs/header"}},
    "header": {
      "$ref": "#/$defs/extensible", "type": "object",
      "properties": {
        "description": {"type": "string"}, "required": {"type": "boolean"}, "deprecated": {"type": "boolean"},
        "style": {"const": "simple"}, "explode": {"type": "boolean"},
        "schema": {"$ref": "#/$defs/schema"}, "content": {"$ref": "#/$defs/content"},
        "example": true, "examples": {"type": "object"}
      },
      "oneOf": [{"required": ["schema"]}, {"required": ["content"]}],
      "unevaluatedProperties": false
    },
    "schema": {"type": ["object", "boolean"]},
    "securitySchemeOrRef": {"if": {"type": "object", "required": ["$ref"]}, "then": {"$ref": "#/$defs/reference"}, "else": {"$ref": "#/$defs/securityScheme"}},
    "securityScheme": {
      "$ref": "#/$defs/extensible", "type": "object", "required": ["type"],
      "properties": {
        "type": {"enum": ["apiKey", "http", "mutualTLS", "oauth2", "openIdConnect"]},
        "description": {"type": "string"}, "name": {"type": "string"}, "in": {"enum": ["query", "header", "cookie"]},
        "scheme": {"type": "string"}, "bearerFormat": {"type": "string"}, "flows": {"type": "object"},
        "openIdConnectUrl": {"type": "string"}
      },
      "if": {"properties": {"type": {"const": "http"}}},
      "then": {"required": ["scheme"]},
      "unevaluatedProperties": false
    },
    "components": {
      "$ref": "#/$defs/extensible", "type": "object",
      "properties": {
        "schemas": {"$ref": "#/$defs/map", "additionalProperties": {"$ref": "#/$defs/schema"}},
        "responses": {"$ref": "#/$defs/map", "additionalProperties": {"$ref": "#/$defs/responseOrRef"}},
        "parameters": {"$ref": "#/$defs/map", "additionalProperties": {"$ref": "#/$defs/parameterOrRef"}},
        "examples": {"$ref": "#/$defs/map"},
        "requestBodies": {"$ref": "#/$defs/map", "additionalProperties": {"$ref": "#/$defs/requestBodyOrRef"}},
        "headers": {"$ref": "#/$defs/map", "additionalProperties": {"$ref": "#/$defs/headerOrRef"}},
        "securitySchemes": {"$ref": "#/$defs/map", "additionalProperties": {"$ref": "#/$defs/securitySchemeOrRef"}},
        "links": {"$ref": "#/$defs/map"},
        "callbacks": {"$ref": "#/$defs/map"},
        "pathItems": {"$ref": "#/$defs/map"}
      },
      "unevaluatedProperties": false
    }
  }
}`

// schemaLocations returns the pointer of every schema of the document:
// components, parameters, headers, request and response bodies, and the
// data schema of the event stream.
func (s *oaSpec) schemaLocations() []string {
	var out []string
	seen := map[string]bool{}
	add := func(p string) {
		if _, ok := s.lookup(p); ok && !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	isRef := func(p string) bool {
		v, _ := s.lookup(p)
		m, _ := v.(map[string]any)
		_, ok := m["$ref"]
		return ok
	}
	content := func(p string) {
		v, _ := s.lookup(p)
		for _, mt := range slices.Sorted(maps.Keys(asObject(v))) {
			add(p + jsonPtr(mt, "schema"))
			add(p + jsonPtr(mt, "x-tasker-event-data"))
		}
	}
	response := func(p string) {
		if isRef(p) {
			return
		}
		content(p + "/content")
		v, _ := s.lookup(p + "/headers")
		for _, h := range slices.Sorted(maps.Keys(asObject(v))) {
			if !isRef(p + jsonPtr("headers", h)) {
				add(p + jsonPtr("headers", h, "schema"))
			}
		}
	}
	params := func(p string) {
		v, _ := s.lookup(p)
		for i := range asArray(v) {
			if !isRef(p + jsonPtr(strconv.Itoa(i))) {
				add(p + jsonPtr(strconv.Itoa(i), "schema"))
			}
		}
	}
	comps := asObject(s.doc["components"])
	for _, name := range slices.Sorted(maps.Keys(asObject(comps["schemas"]))) {
		add(jsonPtr("components", "schemas", name))
	}
	for _, name := range slices.Sorted(maps.Keys(asObject(comps["parameters"]))) {
		add(jsonPtr("components", "parameters", name, "schema"))
	}
	for _, name := range slices.Sorted(maps.Keys(asObject(comps["headers"]))) {
		add(jsonPtr("components", "headers", name, "schema"))
	}
	for _, name := range slices.Sorted(maps.Keys(asObject(comps["requestBodies"]))) {
		content(jsonPtr("components", "requestBodies", name, "content"))
	}
	for _, name := range slices.Sorted(maps.Keys(asObject(comps["responses"]))) {
		response(jsonPtr("components", "responses", name))
	}
	for path := range asObject(s.doc["paths"]) {
		params(jsonPtr("paths", path, "parameters"))
	}
	for _, o := range s.operations() {
		params(o.loc + "/parameters")
		if !isRef(o.loc + "/requestBody") {
			content(o.loc + "/requestBody/content")
		}
		for status := range asObject(o.op["responses"]) {
			response(o.loc + jsonPtr("responses", status))
		}
	}
	slices.Sort(out)
	return out
}

func asObject(v any) map[string]any { m, _ := v.(map[string]any); return m }
func asArray(v any) []any           { l, _ := v.([]any); return l }

// registeredCodes reads the registry of error codes, codes() in
// errors.go, from its source: code -> HTTP status.
func registeredCodes(t *testing.T) map[string]int {
	t.Helper()
	statuses := map[string]int{}
	for code := 100; code < 600; code++ {
		if text := http.StatusText(code); text != "" {
			statuses["Status"+strings.NewReplacer(" ", "", "-", "", "'", "").Replace(text)] = code
		}
	}
	fset := token.NewFileSet()
	file, err := parser.ParseFile(fset, "errors.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, decl := range file.Decls {
		fn, ok := decl.(*ast.FuncDecl)
		if !ok || fn.Name.Name != "codes" {
			continue
		}
		ast.Inspect(fn, func(n ast.Node) bool {
			kv, ok := n.(*ast.KeyValueExpr)
			if !ok {
				return true
			}
			key, ok := kv.Key.(*ast.BasicLit)
			lit, ok2 := kv.Value.(*ast.CompositeLit)
			if !ok || !ok2 || len(lit.Elts) == 0 {
				return true
			}
			code, _ := strconv.Unquote(key.Value)
			sel, ok := lit.Elts[0].(*ast.SelectorExpr)
			if !ok {
				t.Fatalf("errors.go: the status of code %s is not an http.Status constant", code)
			}
			status, ok := statuses[sel.Sel.Name]
			if !ok {
				t.Fatalf("errors.go: unknown status constant %s", sel.Sel.Name)
			}
			out[code] = status
			return false
		})
	}
	if len(out) < 10 {
		t.Fatalf("found only %d codes in codes() of errors.go", len(out))
	}
	return out
}

// The document is a structurally valid OpenAPI 3.1 document: it matches
// the structure of OpenAPI objects, every $ref resolves, operation ids are
// unique, path templates and path parameters agree, every schema compiles
// as JSON Schema 2020-12, and the problem codes are those of the registry.
func TestOpenAPIDocumentIsValid(t *testing.T) {
	t.Parallel()
	s := loadSpec(t)

	c := jsonschema.NewCompiler()
	meta, err := jsonschema.UnmarshalJSON(strings.NewReader(openAPIStructure))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.AddResource("https://tasker.invalid/openapi-3.1-structure.json", meta); err != nil {
		t.Fatal(err)
	}
	structure, err := c.Compile("https://tasker.invalid/openapi-3.1-structure.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := structure.Validate(any(s.doc)); err != nil {
		t.Errorf("the document is not a valid OpenAPI 3.1 document: %v", err)
	}

	// Every $ref resolves.
	var walk func(p string, v any)
	refs := 0
	walk = func(p string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, child := range x {
				if k == "$ref" {
					refs++
					ref, _ := child.(string)
					if !strings.HasPrefix(ref, "#/") {
						t.Errorf("%s: $ref %q is not local", p, ref)
					} else if _, ok := s.lookup(strings.TrimPrefix(ref, "#")); !ok {
						t.Errorf("%s: $ref %q does not resolve", p, ref)
					}
					continue
				}
				walk(p+jsonPtr(k), child)
			}
		case []any:
			for i, child := range x {
				walk(p+jsonPtr(strconv.Itoa(i)), child)
			}
		}
	}
	walk("", s.doc)
	if refs < 50 {
		t.Errorf("only %d $refs: the walk is broken", refs)
	}

	// Operations: unique ids, declared tags, known security schemes, path
	// parameters that match their template.
	tags := map[string]bool{}
	for _, tag := range asArray(s.doc["tags"]) {
		tags[fmt.Sprint(asObject(tag)["name"])] = true
	}
	schemes := asObject(asObject(s.doc["components"])["securitySchemes"])
	ids := map[string]string{}
	for _, o := range s.operations() {
		name := o.method + " " + o.path
		id, _ := o.op["operationId"].(string)
		if prev, dup := ids[id]; dup {
			t.Errorf("%s: operationId %q is also used by %s", name, id, prev)
		}
		ids[id] = name
		for _, tag := range asArray(o.op["tags"]) {
			if !tags[fmt.Sprint(tag)] {
				t.Errorf("%s: tag %v is not declared", name, tag)
			}
		}
		for _, req := range asArray(o.op["security"]) {
			for scheme := range asObject(req) {
				if _, ok := schemes[scheme]; !ok {
					t.Errorf("%s: unknown security scheme %s", name, scheme)
				}
			}
		}
		var declared []string
		for _, p := range s.parameters(o) {
			if p.def == nil {
				t.Errorf("%s: a parameter does not resolve", name)
				continue
			}
			if p.in == "path" {
				declared = append(declared, p.name)
			}
		}
		slices.Sort(declared)
		want := pathTemplateNames(o.path)
		slices.Sort(want)
		if !slices.Equal(declared, want) {
			t.Errorf("%s: path parameters %v, the template has %v", name, declared, want)
		}
	}
	for _, req := range asArray(s.doc["security"]) {
		for scheme := range asObject(req) {
			if _, ok := schemes[scheme]; !ok {
				t.Errorf("root security: unknown scheme %s", scheme)
			}
		}
	}

	// Every schema compiles (draft 2020-12, the dialect of OpenAPI 3.1).
	locs := s.schemaLocations()
	if len(locs) < 60 {
		t.Errorf("only %d schema locations found", len(locs))
	}
	for _, loc := range locs {
		if _, err := s.schema(loc); err != nil {
			t.Errorf("schema %s does not compile: %v", loc, err)
		}
	}

	// The events of the audit trail are the lifecycle events of the catalog.
	var lifecycle []string
	for _, spec := range tasker.EventCatalog() {
		if spec.Durable && (strings.HasPrefix(string(spec.Name), "task.") || strings.HasPrefix(string(spec.Name), "step.")) {
			lifecycle = append(lifecycle, string(spec.Name))
		}
	}
	var transitionEvents []string
	for _, name := range asArray(asObject(asObject(asObject(asObject(asObject(s.doc["components"])["schemas"])["Transition"])["properties"])["event"])["enum"]) {
		transitionEvents = append(transitionEvents, fmt.Sprint(name))
	}
	slices.Sort(lifecycle)
	slices.Sort(transitionEvents)
	if !slices.Equal(transitionEvents, lifecycle) {
		t.Errorf("Transition.event enum %v, the catalog's lifecycle events are %v", transitionEvents, lifecycle)
	}

	// The problem codes are the registry's, each under its status.
	registry := registeredCodes(t)
	enum := asArray(asObject(asObject(asObject(s.doc["components"])["schemas"])["ProblemCode"])["enum"])
	var documented []string
	for _, c := range enum {
		documented = append(documented, fmt.Sprint(c))
	}
	slices.Sort(documented)
	if want := slices.Sorted(maps.Keys(registry)); !slices.Equal(documented, want) {
		t.Errorf("ProblemCode enum %v, the registry has %v", documented, want)
	}
	var statuses []int
	for _, st := range registry {
		if !slices.Contains(statuses, st) {
			statuses = append(statuses, st)
		}
	}
	slices.Sort(statuses)
	var statusEnum []int
	for _, st := range asArray(asObject(asObject(asObject(asObject(asObject(s.doc["components"])["schemas"])["Problem"])["properties"])["status"])["enum"]) {
		n, _ := strconv.Atoi(fmt.Sprint(st))
		statusEnum = append(statusEnum, n)
	}
	slices.Sort(statusEnum)
	if !slices.Equal(statusEnum, statuses) {
		t.Errorf("Problem.status enum %v, the registry has %v", statusEnum, statuses)
	}
	// Each problem response of components.responses lists exactly the codes
	// of its status; together they cover every code but method_not_allowed
	// (answered for methods a path does not serve, so on no operation).
	covered := map[string]bool{}
	for name, resp := range asObject(asObject(s.doc["components"])["responses"]) {
		media := asObject(asObject(asObject(resp)["content"])["application/problem+json"])
		if media == nil {
			continue
		}
		parts := asArray(asObject(media["schema"])["allOf"])
		if len(parts) != 2 {
			t.Errorf("response %s: the schema is not allOf [Problem, {status, code}]", name)
			continue
		}
		props := asObject(asObject(parts[1])["properties"])
		status, _ := strconv.Atoi(fmt.Sprint(asObject(props["status"])["const"]))
		var got []string
		if c, ok := asObject(props["code"])["const"]; ok {
			got = []string{fmt.Sprint(c)}
		}
		for _, c := range asArray(asObject(props["code"])["enum"]) {
			got = append(got, fmt.Sprint(c))
		}
		var want []string
		for code, st := range registry {
			if st == status {
				want = append(want, code)
			}
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("response %s (status %d) has codes %v, the registry %v", name, status, got, want)
		}
		for _, c := range got {
			covered[c] = true
		}
	}
	for code := range registry {
		if !covered[code] && code != "method_not_allowed" {
			t.Errorf("code %s has no problem response in components.responses", code)
		}
	}
}

// The document has every route of the server, with the same method, path
// template, permission and least role, and no other operation; each
// operation documents the problems its route can answer.
func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	t.Parallel()
	s := loadSpec(t)
	f := newFixture(t, false)
	served := map[string]api.Route{}
	for _, rt := range f.srv.Routes() {
		served[rt.Method+" "+rt.Pattern] = rt
	}
	documented := map[string]oaOperation{}
	for _, o := range s.operations() {
		documented[o.method+" "+o.path] = o
	}
	for key := range served {
		if _, ok := documented[key]; !ok {
			t.Errorf("route %s is served but not documented", key)
		}
	}
	for key, o := range documented {
		rt, ok := served[key]
		if !ok {
			t.Errorf("operation %s is documented but not served", key)
			continue
		}
		responses := asObject(o.op["responses"])
		has := func(status string) bool { _, ok := responses[status]; return ok }
		perm, _ := o.op["x-tasker-permission"].(string)
		role, _ := o.op["x-tasker-min-role"].(string)
		unscoped, _ := o.op["x-tasker-unscoped"].(bool)
		security, hasSecurity := o.op["security"]
		if rt.Permission == (auth.Permission{}) {
			if perm != "" || role != "" || unscoped {
				t.Errorf("%s is public but documents permission %q, role %q, unscoped %v", key, perm, role, unscoped)
			}
			if !hasSecurity || len(asArray(security)) != 0 {
				t.Errorf("%s is public: it needs security: []", key)
			}
			for _, st := range []string{"401", "403", "429"} {
				if has(st) {
					t.Errorf("%s is public but documents %s", key, st)
				}
			}
			continue
		}
		if perm != rt.Permission.String() {
			t.Errorf("%s: x-tasker-permission %q, the route needs %s", key, perm, rt.Permission)
		}
		minRole := auth.MinimumRole(rt.Permission)
		if role != string(minRole) {
			t.Errorf("%s: x-tasker-min-role %q, the least role is %s", key, role, minRole)
		}
		if unscoped != rt.Unscoped {
			t.Errorf("%s: x-tasker-unscoped %v, the route's Unscoped is %v", key, unscoped, rt.Unscoped)
		}
		if !hasSecurity {
			security = s.doc["security"] // inherited
		}
		if reqs := asArray(security); len(reqs) != 1 || asObject(reqs[0])["bearerAuth"] == nil {
			t.Errorf("%s: security %v is not bearerAuth", key, security)
		}
		for _, st := range []string{"401", "429", "500"} {
			if !has(st) {
				t.Errorf("%s needs a token but does not document %s", key, st)
			}
		}
		if canForbid := minRole != auth.RoleViewer || rt.Unscoped; canForbid != has("403") {
			t.Errorf("%s: 403 documented %v, but the route can answer it: %v", key, has("403"), canForbid)
		}
		if _, ok := o.op["requestBody"]; ok {
			for _, st := range []string{"400", "413", "415"} {
				if !has(st) {
					t.Errorf("%s reads a body but does not document %s", key, st)
				}
			}
		}
	}
}

// GET /openapi.json serves openapi.yaml, as JSON.
func TestOpenAPIServedDocument(t *testing.T) {
	t.Parallel()
	f := newFixture(t, false)
	r := f.do("GET", "/openapi.json", "", nil)
	if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /openapi.json: %d %s", r.status, r.header.Get("Content-Type"))
	}
	src, err := os.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var fromYAML any
	if err := yaml.Unmarshal(src, &fromYAML); err != nil {
		t.Fatal(err)
	}
	var served any
	r.json(t, &served)
	want, _ := json.Marshal(fromYAML)
	got, _ := json.Marshal(served)
	if !bytes.Equal(got, want) {
		t.Errorf("GET /openapi.json differs from openapi.yaml:\nserved %.300s\nfile   %.300s", got, want)
	}
	if info := asObject(asObject(served)["info"]); asObject(served)["openapi"] != "3.1.0" || info["title"] == nil {
		t.Errorf("served document: openapi %v, info %v", asObject(served)["openapi"], info)
	}
}

// oaContract checks exchanges with a server against the document.
type oaContract struct {
	t    *testing.T
	s    *oaSpec
	mux  *http.ServeMux
	seen map[string]map[int]bool // METHOD path-template -> statuses seen
}

type oaRouteHit struct {
	pattern string
	values  map[string]string
}

type oaRouteHitKey struct{}

func newContract(t *testing.T, s *oaSpec) *oaContract {
	c := &oaContract{t: t, s: s, mux: http.NewServeMux(), seen: map[string]map[int]bool{}}
	for _, o := range s.operations() {
		names := pathTemplateNames(o.path)
		c.mux.HandleFunc(o.method+" "+o.path, func(_ http.ResponseWriter, r *http.Request) {
			h := r.Context().Value(oaRouteHitKey{}).(*oaRouteHit)
			h.pattern = o.path
			for _, n := range names {
				h.values[n] = r.PathValue(n)
			}
		})
	}
	return c
}

// route finds the documented operation of a request, as the server's
// router would, with the values of its path parameters; ok is false when
// no operation matches, and pathExists then reports a path documented for
// another method.
func (c *oaContract) route(method, target string) (o oaOperation, values map[string]string, ok, pathExists bool) {
	find := func(m string) *oaRouteHit {
		h := &oaRouteHit{values: map[string]string{}}
		req := httptest.NewRequestWithContext(context.WithValue(context.Background(), oaRouteHitKey{}, h), m, target, nil)
		c.mux.ServeHTTP(httptest.NewRecorder(), req)
		return h
	}
	if h := find(method); h.pattern != "" {
		return oaOperation{method: method, path: h.pattern, loc: jsonPtr("paths", h.pattern, strings.ToLower(method)),
			op: asObject(asObject(asObject(c.s.doc["paths"])[h.pattern])[strings.ToLower(method)])}, h.values, true, true
	}
	for _, m := range httpMethods {
		if find(strings.ToUpper(m)).pattern != "" {
			return oaOperation{}, nil, false, true
		}
	}
	return oaOperation{}, nil, false, false
}

// oaCall is one request of the contract test.
type oaCall struct {
	method, path, token string
	// body is nil (none), a string (raw) or a value sent as JSON.
	body    any
	headers []string
	// status and code are the answer expected.
	status int
	code   string
	// lax reports a request the server refuses for a reason the document
	// cannot express (such as a duration outside its bounds).
	lax bool
}

func (cl oaCall) String() string {
	return cl.method + " " + cl.path
}

func (cl oaCall) header(name string) (string, bool) {
	for i := 0; i+1 < len(cl.headers); i += 2 {
		if strings.EqualFold(cl.headers[i], name) {
			return cl.headers[i+1], true
		}
	}
	return "", false
}

// do sends the request, checks the status and code, and checks the
// request and the response against the document.
func (c *oaContract) do(f *fixture, cl oaCall) *response {
	c.t.Helper()
	r := f.do(cl.method, cl.path, cl.token, cl.body, cl.headers...)
	if r.status != cl.status {
		c.t.Errorf("%s: status %d, want %d: %.500s", cl, r.status, cl.status, r.body)
	}
	if cl.code != "" {
		var p api.Problem
		_ = json.Unmarshal(r.body, &p)
		if p.Code != cl.code {
			c.t.Errorf("%s: problem code %q, want %s: %.300s", cl, p.Code, cl.code, r.body)
		}
	}
	c.checkRequest(cl, r)
	c.checkResponse(cl.String(), cl.method, cl.path, r.status, r.header, r.body)
	return r
}

// paramValue turns a query or header value into the JSON value its schema
// describes.
func (c *oaContract) paramValue(p oaParameter, v string) any {
	sch, _ := c.s.object(p.loc + "/schema")
	if sch["type"] == "integer" && regexp.MustCompile(`^-?[0-9]+$`).MatchString(v) {
		return json.Number(v)
	}
	return v
}

// requestProblem returns why the document refuses a request, or "".
func (c *oaContract) requestProblem(cl oaCall) string {
	o, values, ok, _ := c.route(cl.method, cl.path)
	if !ok {
		return "no such operation"
	}
	params := c.s.parameters(o)
	for _, p := range params {
		if p.in != "path" {
			continue
		}
		if err := c.s.validate(p.loc+"/schema", values[p.name]); err != nil {
			return fmt.Sprintf("path parameter %s: %v", p.name, err)
		}
	}
	u, err := url.Parse(cl.path)
	if err != nil {
		return err.Error()
	}
	for name, vals := range u.Query() {
		i := slices.IndexFunc(params, func(p oaParameter) bool { return p.in == "query" && p.name == name })
		if i < 0 {
			return "unknown query parameter " + name
		}
		if len(vals) > 1 {
			return "repeated query parameter " + name
		}
		if vals[0] == "" {
			continue
		}
		if err := c.s.validate(params[i].loc+"/schema", c.paramValue(params[i], vals[0])); err != nil {
			return fmt.Sprintf("query parameter %s: %v", name, err)
		}
	}
	for _, p := range params {
		v, sent := cl.header(p.name)
		if p.in != "header" || !sent || strings.EqualFold(p.name, "X-Correlation-ID") {
			continue // an invalid correlation id is replaced, not refused
		}
		if err := c.s.validate(p.loc+"/schema", c.paramValue(p, v)); err != nil {
			return fmt.Sprintf("header %s: %v", p.name, err)
		}
	}
	body, bodyPtr := c.s.object(o.loc + "/requestBody")
	if body == nil {
		return ""
	}
	var raw []byte
	switch b := cl.body.(type) {
	case nil:
	case string:
		raw = []byte(b)
	default:
		raw, _ = json.Marshal(b)
	}
	if len(raw) == 0 {
		if required, _ := body["required"].(bool); required {
			return "the body is required"
		}
		return ""
	}
	ct := "application/json"
	if v, ok := cl.header("Content-Type"); ok {
		ct = v
	}
	mt, _, _ := mime.ParseMediaType(ct)
	if _, ok := asObject(body["content"])[mt]; !ok {
		return "media type " + mt + " is not documented"
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return "the body is not JSON: " + err.Error()
	}
	if err := c.s.validate(bodyPtr+jsonPtr("content", mt, "schema"), inst); err != nil {
		return "body: " + err.Error()
	}
	return ""
}

// checkRequest checks that the document and the server agree on the
// request: what the server accepts, the document allows, and what the
// document refuses, the server refuses as malformed.
func (c *oaContract) checkRequest(cl oaCall, r *response) {
	c.t.Helper()
	problem := c.requestProblem(cl)
	var p api.Problem
	_ = json.Unmarshal(r.body, &p)
	malformed := r.status == http.StatusBadRequest && (p.Code == "invalid_json" || p.Code == "unknown_field" || p.Code == "invalid_parameter")
	switch {
	case r.status < 300 && problem != "":
		c.t.Errorf("%s: the server accepted a request the document refuses: %s", cl, problem)
	case malformed && problem == "" && !cl.lax:
		c.t.Errorf("%s: the server refused (%s: %s) a request the document allows", cl, p.Code, p.Detail)
	case cl.lax && problem != "":
		c.t.Errorf("%s is marked lax, but the document refuses it (%s)", cl, problem)
	}
}

// checkResponse checks a response against the document: its status is
// documented for the operation, its required headers are there and valid,
// its media type is documented and its body matches the schema.
func (c *oaContract) checkResponse(name, method, target string, status int, h http.Header, body []byte) {
	c.t.Helper()
	o, _, ok, pathExists := c.route(method, target)
	if !ok {
		want := http.StatusNotFound
		if pathExists {
			want = http.StatusMethodNotAllowed
		}
		if status != want {
			c.t.Errorf("%s: no operation matches; status %d, want %d", name, status, want)
		}
		c.checkBody(name, jsonPtr("components", "schemas", "Problem"), body)
		return
	}
	key := o.method + " " + o.path
	if c.seen[key] == nil {
		c.seen[key] = map[int]bool{}
	}
	c.seen[key][status] = true
	resp, respPtr := c.s.object(o.loc + jsonPtr("responses", strconv.Itoa(status)))
	if resp == nil {
		c.t.Errorf("%s: status %d is not documented for %s: %.300s", name, status, key, body)
		return
	}
	for hname := range asObject(resp["headers"]) {
		hdef, hptr := c.s.object(respPtr + jsonPtr("headers", hname))
		v := h.Get(hname)
		if required, _ := hdef["required"].(bool); required && v == "" {
			c.t.Errorf("%s: %d without the required header %s", name, status, hname)
			continue
		}
		if v != "" {
			val := any(v)
			if sch, _ := c.s.object(hptr + "/schema"); sch["type"] == "integer" {
				val = json.Number(v)
			}
			if err := c.s.validate(hptr+"/schema", val); err != nil {
				c.t.Errorf("%s: header %s %q: %v", name, hname, v, err)
			}
		}
	}
	content := asObject(resp["content"])
	if len(content) == 0 {
		if len(body) > 0 {
			c.t.Errorf("%s: %d has a body but documents none", name, status)
		}
		return
	}
	mt, _, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil {
		c.t.Errorf("%s: Content-Type %q: %v", name, h.Get("Content-Type"), err)
		return
	}
	if _, ok := content[mt]; !ok {
		c.t.Errorf("%s: %d is %s, documented as %v", name, status, mt, slices.Sorted(maps.Keys(content)))
		return
	}
	schemaPtr := respPtr + jsonPtr("content", mt, "schema")
	switch {
	case mt == "application/json" || strings.HasSuffix(mt, "+json"):
		c.checkBody(name, schemaPtr, body)
	case mt == "text/event-stream":
		// Read by the caller, event by event (see stream).
	default:
		if err := c.s.validate(schemaPtr, string(body)); err != nil {
			c.t.Errorf("%s: %d body: %v", name, status, err)
		}
	}
}

func (c *oaContract) checkBody(name, schemaPtr string, body []byte) {
	c.t.Helper()
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		c.t.Errorf("%s: the body is not JSON: %v: %.300s", name, err, body)
		return
	}
	if err := c.s.validate(schemaPtr, inst); err != nil {
		c.t.Errorf("%s: the body does not match %s: %v\n%.1000s", name, schemaPtr, err, body)
	}
}

// sseMessage is one event of a stream, with its raw data.
type sseMessage struct {
	id, event string
	data      []byte
}

// stream opens the event stream, checks the response and each event's
// data against the document, and reads events until stop says so.
func (c *oaContract) stream(ctx context.Context, f *fixture, query, token string, stop func([]sseMessage) bool, headers ...string) []sseMessage {
	c.t.Helper()
	cl := oaCall{method: "GET", path: "/v1/events/stream" + query, token: token, headers: headers, status: http.StatusOK}
	req, err := http.NewRequestWithContext(ctx, cl.method, f.url+cl.path, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		c.t.Fatalf("%s: %d %s", cl, resp.StatusCode, body)
	}
	c.checkRequest(cl, &response{status: resp.StatusCode, header: resp.Header})
	c.checkResponse(cl.String(), cl.method, cl.path, resp.StatusCode, resp.Header, nil)
	dataPtr := jsonPtr("paths", "/v1/events/stream", "get", "responses", "200", "content", "text/event-stream", "x-tasker-event-data")
	var out []sseMessage
	var cur sseMessage
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		field, value, _ := strings.Cut(line, ": ")
		switch {
		case line == "" && cur.event != "":
			if cur.event == "error" {
				c.t.Errorf("%s: the stream failed: %s", cl, cur.data)
				return out
			}
			if err := c.s.validate(dataPtr, mustDecodeJSON(c.t, cur.data)); err != nil {
				c.t.Errorf("%s: event %s %s does not match the Event schema: %v\n%s", cl, cur.id, cur.event, err, cur.data)
			}
			if ev := asObject(mustDecodeJSON(c.t, cur.data)); fmt.Sprint(ev["cursor"]) != cur.id || ev["name"] != cur.event {
				c.t.Errorf("%s: SSE id %s and event %s differ from the data's cursor and name: %s", cl, cur.id, cur.event, cur.data)
			}
			out = append(out, cur)
			cur = sseMessage{}
			if stop(out) {
				return out
			}
		case line == "" || strings.HasPrefix(line, ":"):
		case field == "id":
			cur.id = value
		case field == "event":
			cur.event = value
		case field == "data":
			cur.data = []byte(value)
		case field == "retry":
		default:
			c.t.Errorf("%s: unexpected stream line %q", cl, line)
		}
	}
	return out
}

func mustDecodeJSON(t *testing.T, b []byte) any {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("not JSON: %v: %s", err, b)
	}
	return v
}

// waitTaskUntil waits until a task satisfies ok.
func waitTaskUntil(t *testing.T, f *fixture, id string, ok func(*tasker.Task) bool) *tasker.Task {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		task, err := f.client.Task(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if ok(task) {
			return task
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s: still %s", id, task.State)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func taskInState(states ...tasker.TaskState) func(*tasker.Task) bool {
	return func(t *tasker.Task) bool { return slices.Contains(states, t.State) }
}

const oaFailingYAML = `namespace: alpha
name: failing
version: 1.0.0
description: A step that fails permanently until it is resolved by hand
identity_strategy: hash
concurrency: 4
context_schema:
  type: object
  properties: {order: {type: integer}}
events:
  - {name: alpha.flagged, description: A custom event, schema: {type: object}}
  - {name: alpha.noted}
defaults:
  retry: {limit: 2, backoff: {initial: 10ms}}
steps:
  - {name: boom, description: Fails permanently, handler: http, config: {method: POST, url: "http://10.0.0.1/charge", body: {order: "{{ .context.order }}"}}}
  - {name: after, handler: noop, depends_on: [boom]}
`

const oaHookedYAML = `namespace: alpha
name: hooked
version: 1.0.0
subscriptions:
  - name: keep
    events: [task.initialize_requested]
    url: http://10.0.0.1/hook
    secret: s3cret
    retry: {limit: 5, backoff: {initial: 1h, max: 2h}}
  - name: once
    events: [task.*]
    url: https://192.168.0.1/hook
    secret: s3cret
    retry: {limit: 1}
steps:
  - {name: only, handler: noop}
`

const oaSlowYAML = `namespace: alpha
name: slow
version: 1.0.0
steps:
  - {name: wait, handler: sleep, config: {duration: 300ms}}
  - {name: then, handler: noop, depends_on: [wait]}
`

// A real server, driven through every route with valid and invalid
// requests, answers what the document says: every status is documented
// for its operation, and every body matches the documented schema for
// its status and media type.
func TestOpenAPIResponsesMatchSchemas(t *testing.T) {
	t.Parallel()
	s := loadSpec(t)
	c := newContract(t, s)
	f := newFixture(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	viewer, op, admin := f.tokens["viewer"], f.tokens["operator"], f.tokens["admin"]
	alphaOp, betaAdmin := f.tokens["alpha-operator"], f.tokens["beta-admin"]
	type object = map[string]any

	// Health, metrics and the document.
	c.do(f, oaCall{method: "GET", path: "/health/live", status: 200})
	c.do(f, oaCall{method: "GET", path: "/health/ready", status: 200, headers: []string{"X-Correlation-ID", "probe-1"}})
	c.do(f, oaCall{method: "GET", path: "/openapi.json", status: 200})
	c.do(f, oaCall{method: "GET", path: "/metrics", token: viewer, status: 200})
	c.do(f, oaCall{method: "GET", path: "/metrics", token: alphaOp, status: 403, code: "forbidden"})
	c.do(f, oaCall{method: "GET", path: "/metrics", status: 401, code: "unauthenticated"})

	// Templates.
	c.do(f, oaCall{method: "PUT", path: "/v1/templates", token: admin, body: object{"source": oaFailingYAML}, status: 200})
	c.do(f, oaCall{method: "PUT", path: "/v1/templates", token: admin, body: object{"source": oaSlowYAML, "environment": ""}, status: 200})
	c.do(f, oaCall{method: "PUT", path: "/v1/templates", token: admin, body: object{"source": oaSlowYAML}, status: 200})
	c.do(f, oaCall{method: "PUT", path: "/v1/templates", token: op, body: object{"source": oaSlowYAML}, status: 403, code: "forbidden"})
	c.do(f, oaCall{method: "PUT", path: "/v1/templates", token: betaAdmin, body: object{"source": oaSlowYAML}, status: 404, code: "not_found"})
	c.do(f, oaCall{method: "PUT", path: "/v1/templates", token: admin, body: object{"source": "namespace: a\nname: b\nversion: 1.0.0\nsteps:\n  - {name: x, handler: nope}\n"},
		status: 422, code: "invalid_template"})
	c.do(f, oaCall{method: "PUT", path: "/v1/templates", token: admin, body: object{"source": oaSlowYAML, "environment": "production"}, status: 422, code: "invalid_template"})
	c.do(f, oaCall{method: "PUT", path: "/v1/templates", token: admin, body: object{"source": "  "}, status: 400, code: "invalid_json"})
	c.do(f, oaCall{method: "PUT", path: "/v1/templates", token: admin, body: object{"yaml": oaSlowYAML}, status: 400, code: "unknown_field"})
	c.do(f, oaCall{method: "POST", path: "/v1/templates/validate", token: op, body: object{"source": oaFailingYAML}, status: 200})
	c.do(f, oaCall{method: "POST", path: "/v1/templates/validate", token: op, body: object{"source": "namespace: a\nname: b\nversion: x\nsteps: []\n"}, status: 200})
	c.do(f, oaCall{method: "POST", path: "/v1/templates/validate", token: op, body: `{"source": 42}`, status: 400, code: "invalid_json"})
	c.do(f, oaCall{method: "POST", path: "/v1/templates/validate", token: viewer, body: object{"source": oaSlowYAML}, status: 403, code: "forbidden"})
	c.do(f, oaCall{method: "GET", path: "/v1/templates", token: viewer, status: 200})
	c.do(f, oaCall{method: "GET", path: "/v1/templates?namespace=alpha", token: betaAdmin, status: 200})
	c.do(f, oaCall{method: "GET", path: "/v1/templates?names=alpha", token: viewer, status: 400, code: "invalid_parameter"})
	c.do(f, oaCall{method: "GET", path: "/v1/templates?namespace=" + strings.Repeat("n", 65), token: viewer, status: 400, code: "invalid_parameter"})
	c.do(f, oaCall{method: "GET", path: "/v1/templates/alpha/failing", token: viewer, status: 200})
	c.do(f, oaCall{method: "GET", path: "/v1/templates/alpha/flow/1.0.0", token: viewer, status: 200})
	c.do(f, oaCall{method: "GET", path: "/v1/templates/alpha/nope", token: viewer, status: 404, code: "not_found"})
	c.do(f, oaCall{method: "GET", path: "/v1/templates/alpha/flow/9.9.9", token: viewer, status: 404, code: "not_found"})
	c.do(f, oaCall{method: "GET", path: "/v1/templates/alpha/flow", token: betaAdmin, status: 404, code: "not_found"})

	// Creating tasks.
	key := []string{"Idempotency-Key", "order-7"}
	r := c.do(f, oaCall{method: "POST", path: "/v1/tasks", token: op, body: object{"namespace": "alpha", "name": "flow", "context": object{"n": 1}}, headers: key, status: 201})
	var created struct{ Task tasker.Task }
	r.json(t, &created)
	flowID := created.Task.ID
	c.do(f, oaCall{method: "POST", path: "/v1/tasks", token: op, body: object{"namespace": "alpha", "name": "flow", "context": object{"n": 1}}, headers: key, status: 200})
	c.do(f, oaCall{method: "POST", path: "/v1/tasks", token: op, body: object{"namespace": "alpha", "name": "flow", "context": object{"n": 2}}, headers: key, status: 409, code: "conflict"})
	c.do(f, oaCall{method: "POST", path: "/v1/tasks", token: op, body: object{"namespace": "beta", "name": "flow", "version": "1.0.0"}, status: 201})
	c.do(f, oaCall{method: "POST", path: "/v1/tasks", token: op, body: object{"namespace": "alpha", "name": "flow", "context": object{"n": "x"}}, status: 422, code: "invalid_context"})
	c.do(f, oaCall{method: "POST", path: "/v1/tasks", token: op, body: object{"namespace": "alpha", "name": "nope"}, status: 422, code: "invalid_request"})
	c.do(f, oaCall{method: "POST", path: "/v1/tasks", token: op, body: object{"namespace": "alpha"}, status: 400, code: "invalid_json"})
	c.do(f, oaCall{method: "POST", path: "/v1/tasks", token: op, body: object{"namespace": "alpha", "name": strings.Repeat("n", 65)}, status: 400, code: "invalid_json"})
	c.do(f, oaCall{method: "POST", path: "/v1/tasks", token: op, body: object{"namespace": "alpha", "name": "flow", "priority": 1}, status: 400, code: "unknown_field"})
	c.do(f, oaCall{method: "POST", path: "/v1/tasks", token: op, body: `{"namespace": "alpha", "name": 7}`, status: 400, code: "invalid_json"})
	c.do(f, oaCall{method: "POST", path: "/v1/tasks", token: op, body: object{"namespace": "alpha", "name": "flow"}, headers: []string{"Idempotency-Key", strings.Repeat("k", 256)},
		status: 400, code: "invalid_parameter"})
	c.do(f, oaCall{method: "POST", path: "/v1/tasks", token: op, body: `{"namespace":"alpha","name":"flow"}`, headers: []string{"Content-Type", "text/plain"}, status: 415, code: "unsupported_media_type"})
	c.do(f, oaCall{method: "POST", path: "/v1/tasks", token: op, body: `{"namespace":"alpha","name":"flow","context":{"pad":"` + strings.Repeat("x", 1<<20) + `"}}`,
		status: 413, code: "body_too_large"})
	c.do(f, oaCall{method: "POST", path: "/v1/tasks", token: viewer, body: object{"namespace": "alpha", "name": "flow"}, status: 403, code: "forbidden"})
	c.do(f, oaCall{method: "POST", path: "/v1/tasks", token: betaAdmin, body: object{"namespace": "alpha", "name": "flow"}, status: 404, code: "not_found"})
	for _, kind := range []string{"malformed", "unknown", "expired", "revoked"} {
		c.do(f, oaCall{method: "POST", path: "/v1/tasks", token: f.tokens[kind], body: object{"namespace": "alpha", "name": "flow"}, status: 401, code: "unauthenticated"})
	}

	// Webhooks: "keep" leaves its delivery pending (the next attempt is an
	// hour away), "once" gives up after one attempt.
	c.do(f, oaCall{method: "PUT", path: "/v1/templates", token: admin, body: object{"source": oaHookedYAML}, status: 200})
	r = c.do(f, oaCall{method: "POST", path: "/v1/tasks", token: op, body: object{"namespace": "alpha", "name": "hooked"}, status: 201})
	r.json(t, &created)
	var keepID, onceID string
	for deadline := time.Now().Add(10 * time.Second); ; {
		ds, err := f.client.Deliveries(ctx, &tasker.DeliveryListOpts{TaskID: created.Task.ID})
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			switch {
			case d.Subscription == "keep" && d.Attempts >= 1 && d.State == tasker.DeliveryPending:
				keepID = d.ID
			case d.Subscription == "once" && d.State == tasker.DeliveryFailed:
				onceID = d.ID
			}
		}
		if keepID != "" && onceID != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("deliveries: %+v", ds)
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.do(f, oaCall{method: "GET", path: "/v1/me", token: viewer, status: 200})
	c.do(f, oaCall{method: "GET", path: "/v1/me", token: alphaOp, status: 200})
	c.do(f, oaCall{method: "GET", path: "/v1/overview", token: viewer, status: 200})
	c.do(f, oaCall{method: "GET", path: "/v1/overview?namespace=beta", token: alphaOp, status: 200})
	c.do(f, oaCall{method: "GET", path: "/v1/overview?namespace=%20", token: viewer, status: 200})
	c.do(f, oaCall{method: "GET", path: "/v1/overview?namespace=" + strings.Repeat("n", 65), token: viewer, status: 400, code: "invalid_parameter"})
	c.do(f, oaCall{method: "GET", path: "/v1/webhooks", token: viewer, status: 200})
	c.do(f, oaCall{method: "GET", path: "/v1/webhooks?namespace=alpha", token: betaAdmin, status: 200})
	c.do(f, oaCall{method: "GET", path: "/v1/webhooks?namespace=" + strings.Repeat("n", 65), token: viewer, status: 400, code: "invalid_parameter"})
	c.do(f, oaCall{method: "GET", path: "/v1/deliveries?webhook=" + url.QueryEscape("template:alpha/hooked@1.0.0/keep") + "&state=pending&limit=1", token: viewer, status: 200})
	c.do(f, oaCall{method: "GET", path: "/v1/deliveries?task_id=" + created.Task.ID + "&before=ffffffff", token: alphaOp, status: 200})
	c.do(f, oaCall{method: "GET", path: "/v1/deliveries?state=lost", token: viewer, status: 400, code: "invalid_parameter"})
	c.do(f, oaCall{method: "GET", path: "/v1/deliveries/" + keepID, token: viewer, status: 200})
	c.do(f, oaCall{method: "GET", path: "/v1/deliveries/" + keepID, token: betaAdmin, status: 404, code: "not_found"})
	c.do(f, oaCall{method: "GET", path: "/v1/deliveries/nope", token: viewer, status: 404, code: "not_found"})
	c.do(f, oaCall{method: "POST", path: "/v1/deliveries/" + keepID + "/retry", token: op, status: 409, code: "conflict"})
	c.do(f, oaCall{method: "POST", path: "/v1/deliveries/" + keepID + "/retry", token: betaAdmin, status: 404, code: "not_found"})
	c.do(f, oaCall{method: "POST", path: "/v1/deliveries/" + onceID + "/retry", token: viewer, status: 403, code: "forbidden"})
	c.do(f, oaCall{method: "POST", path: "/v1/deliveries/" + onceID + "/retry", token: op, body: `{"reason": 1}`, status: 400, code: "invalid_json"})
	c.do(f, oaCall{method: "POST", path: "/v1/deliveries/" + onceID + "/retry", token: op, body: object{"reason": "receiver fixed"}, status: 200})

	// Following a task on the event stream, then resuming it.
	first := c.stream(ctx, f, "?task_id="+flowID, viewer, func(evs []sseMessage) bool { return len(evs) == 3 })
	if len(first) != 3 {
		t.Fatalf("read %d events", len(first))
	}
	rest := c.stream(ctx, f, "?task_id="+flowID+"&event=task.*,step.*", viewer, func(evs []sseMessage) bool { return evs[len(evs)-1].event == "task.completed" },
		"Last-Event-ID", first[len(first)-1].id)
	if len(rest) == 0 || rest[0].id == first[len(first)-1].id {
		t.Errorf("the resumed stream repeated or lost events: %v", rest)
	}
	c.stream(ctx, f, "?after=1&namespace=alpha&name=flow&event=*", viewer, func(evs []sseMessage) bool { return len(evs) >= 2 })
	c.do(f, oaCall{method: "GET", path: "/v1/events/stream", token: viewer, headers: []string{"Last-Event-ID", "abc"}, status: 400, code: "invalid_parameter"})
	c.do(f, oaCall{method: "GET", path: "/v1/events/stream?limit=5", token: viewer, status: 400, code: "invalid_parameter"})
	c.do(f, oaCall{method: "GET", path: "/v1/events/stream", status: 401, code: "unauthenticated"})

	// Reading tasks.
	waitTaskUntil(t, f, flowID, taskInState(tasker.TaskComplete))
	r = c.do(f, oaCall{method: "GET", path: "/v1/tasks?limit=1", token: viewer, status: 200})
	var page tasker.TaskPage
	r.json(t, &page)
	if page.NextCursor == "" {
		t.Fatalf("no next cursor: %s", r.body)
	}
	c.do(f, oaCall{method: "GET", path: "/v1/tasks?limit=1&cursor=" + url.QueryEscape(page.NextCursor), token: viewer, status: 200})
	since := url.QueryEscape(time.Now().Add(-time.Hour).Format(time.RFC3339Nano))
	c.do(f, oaCall{method: "GET", path: "/v1/tasks?name=flow&version=1.0.0&state=complete&q=order&created_after=" + since + "&created_before=2099-01-01T00:00:00Z", token: viewer, status: 200})
	c.do(f, oaCall{method: "GET", path: "/v1/tasks?namespace=alpha", token: betaAdmin, status: 200})
	c.do(f, oaCall{method: "GET", path: "/v1/tasks", token: alphaOp, status: 200})
	c.do(f, oaCall{method: "GET", path: "/v1/tasks?cursor=not-a-cursor", token: viewer, status: 400, code: "invalid_cursor"})
	c.do(f, oaCall{method: "GET", path: "/v1/tasks?limit=0", token: viewer, status: 400, code: "invalid_parameter"})
	c.do(f, oaCall{method: "GET", path: "/v1/tasks?limit=501", token: viewer, status: 400, code: "invalid_parameter"})
	c.do(f, oaCall{method: "GET", path: "/v1/tasks?state=sleeping", token: viewer, status: 400, code: "invalid_parameter"})
	c.do(f, oaCall{method: "GET", path: "/v1/tasks?created_after=yesterday", token: viewer, status: 400, code: "invalid_parameter"})
	c.do(f, oaCall{method: "GET", path: "/v1/tasks?q=" + strings.Repeat("q", 201), token: viewer, status: 400, code: "invalid_parameter"})
	c.do(f, oaCall{method: "GET", path: "/v1/tasks?state=error&state=complete", token: viewer, status: 400, code: "invalid_parameter"})
	c.do(f, oaCall{method: "GET", path: "/v1/tasks?colour=red", token: viewer, status: 400, code: "invalid_parameter"})
	c.do(f, oaCall{method: "GET", path: "/v1/tasks", status: 401, code: "unauthenticated"})
	r = c.do(f, oaCall{method: "GET", path: "/v1/tasks/" + flowID, token: viewer, status: 200})
	var got struct{ Task tasker.Task }
	r.json(t, &got)
	step := got.Task.Steps[0].ID
	c.do(f, oaCall{method: "GET", path: "/v1/tasks/" + flowID + "/diagram", token: viewer, status: 200})
	c.do(f, oaCall{method: "GET", path: "/v1/tasks/" + flowID + "/transitions", token: viewer, status: 200})
	c.do(f, oaCall{method: "GET", path: "/v1/tasks/" + flowID, token: betaAdmin, status: 404, code: "not_found"})
	c.do(f, oaCall{method: "GET", path: "/v1/tasks/00000000-0000-0000-0000-000000000000", token: viewer, status: 404, code: "not_found"})
	c.do(f, oaCall{method: "GET", path: "/v1/tasks/" + strings.Repeat("x", 65) + "/diagram", token: viewer, status: 404, code: "not_found"})
	c.do(f, oaCall{method: "GET", path: "/v1/tasks/nope/transitions", token: viewer, status: 404, code: "not_found"})
	c.do(f, oaCall{method: "GET", path: "/v1/steps/" + step, token: viewer, status: 200})
	c.do(f, oaCall{method: "GET", path: "/v1/steps/" + step + "/transitions", token: viewer, status: 200})
	c.do(f, oaCall{method: "GET", path: "/v1/steps/nope", token: viewer, status: 404, code: "not_found"})
	c.do(f, oaCall{method: "GET", path: "/v1/steps/nope/transitions", token: viewer, status: 404, code: "not_found"})

	// Operator actions that the state machine refuses.
	c.do(f, oaCall{method: "POST", path: "/v1/tasks/" + flowID + "/retry", token: op, status: 409, code: "invalid_transition"})
	c.do(f, oaCall{method: "POST", path: "/v1/tasks/" + flowID + "/cancel", token: op, body: object{"reason": "too late"}, status: 409, code: "invalid_transition"})
	c.do(f, oaCall{method: "POST", path: "/v1/steps/" + step + "/reset", token: op, status: 409, code: "invalid_transition"})
	c.do(f, oaCall{method: "POST", path: "/v1/steps/" + step + "/cancel", token: op, status: 409, code: "invalid_transition"})
	c.do(f, oaCall{method: "POST", path: "/v1/steps/" + step + "/resolve", token: op, body: object{"reason": "done"}, status: 409, code: "invalid_transition"})
	c.do(f, oaCall{method: "POST", path: "/v1/steps/" + step + "/resolve", token: op, body: object{}, status: 400, code: "invalid_json"})
	c.do(f, oaCall{method: "POST", path: "/v1/steps/" + step + "/resolve", token: op, body: object{"reason": " "}, status: 400, code: "invalid_json"})
	c.do(f, oaCall{method: "POST", path: "/v1/steps/" + step + "/reset", token: op, body: object{"reason": strings.Repeat("r", 1001)}, status: 400, code: "invalid_json"})
	c.do(f, oaCall{method: "POST", path: "/v1/steps/" + step + "/reset", token: op, body: object{"why": "x"}, status: 400, code: "unknown_field"})
	c.do(f, oaCall{method: "POST", path: "/v1/steps/" + step + "/cancel", token: viewer, status: 403, code: "forbidden"})
	c.do(f, oaCall{method: "POST", path: "/v1/steps/" + step + "/reset", token: betaAdmin, status: 404, code: "not_found"})
	c.do(f, oaCall{method: "POST", path: "/v1/tasks/" + flowID + "/retry", token: op, body: "reason=x", headers: []string{"Content-Type", "application/x-www-form-urlencoded"},
		status: 415, code: "unsupported_media_type"})
	c.do(f, oaCall{method: "POST", path: "/v1/tasks/" + flowID + "/cancel", token: viewer, status: 403, code: "forbidden"})
	c.do(f, oaCall{method: "POST", path: "/v1/tasks/" + flowID + "/retry", token: viewer, status: 403, code: "forbidden"})
	c.do(f, oaCall{method: "POST", path: "/v1/steps/" + step + "/reset", token: viewer, status: 403, code: "forbidden"})
	c.do(f, oaCall{method: "POST", path: "/v1/steps/" + step + "/resolve", token: viewer, body: object{"reason": "x"}, status: 403, code: "forbidden"})
	c.do(f, oaCall{method: "POST", path: "/v1/tasks/" + flowID + "/cancel", token: op, body: `{"reason":`, status: 400, code: "invalid_json"})
	c.do(f, oaCall{method: "POST", path: "/v1/tasks/" + flowID + "/retry", token: op, body: `{"reason": ["x"]}`, status: 400, code: "invalid_json"})
	c.do(f, oaCall{method: "POST", path: "/v1/steps/" + step + "/cancel", token: op, body: `{"reason": "x"} {}`, status: 400, code: "invalid_json"})
	c.do(f, oaCall{method: "POST", path: "/v1/tasks/nope/cancel", token: op, status: 404, code: "not_found"})
	c.do(f, oaCall{method: "POST", path: "/v1/tasks/nope/retry", token: op, status: 404, code: "not_found"})
	c.do(f, oaCall{method: "POST", path: "/v1/steps/nope/cancel", token: op, status: 404, code: "not_found"})
	c.do(f, oaCall{method: "POST", path: "/v1/steps/nope/resolve", token: op, body: object{"reason": "x"}, status: 404, code: "not_found"})
	c.do(f, oaCall{method: "POST", path: "/v1/tasks/" + flowID + "/resolve", token: op, body: object{"reason": "done"}, status: 409, code: "invalid_transition"})
	c.do(f, oaCall{method: "POST", path: "/v1/tasks/" + flowID + "/resolve", token: op, body: object{}, status: 400, code: "invalid_json"})
	c.do(f, oaCall{method: "POST", path: "/v1/tasks/" + flowID + "/resolve", token: viewer, body: object{"reason": "x"}, status: 403, code: "forbidden"})
	c.do(f, oaCall{method: "POST", path: "/v1/tasks/nope/resolve", token: op, body: object{"reason": "x"}, status: 404, code: "not_found"})

	// A task that fails: retried, reset, then resolved by hand.
	r = c.do(f, oaCall{method: "POST", path: "/v1/tasks", token: op, body: object{"namespace": "alpha", "name": "failing", "context": object{"order": 1}}, status: 201})
	r.json(t, &created)
	failID := created.Task.ID
	c.do(f, oaCall{method: "POST", path: "/v1/tasks", token: op, body: object{"namespace": "alpha", "name": "failing", "context": object{"order": 1}}, status: 200})
	failed := waitTaskUntil(t, f, failID, taskInState(tasker.TaskError))
	boom := failed.Steps[0].ID
	c.do(f, oaCall{method: "GET", path: "/v1/tasks/" + failID, token: viewer, status: 200})
	c.do(f, oaCall{method: "GET", path: "/v1/steps/" + boom, token: viewer, status: 200})
	c.do(f, oaCall{method: "POST", path: "/v1/tasks/" + failID + "/cancel", token: op, status: 409, code: "invalid_transition"})
	c.do(f, oaCall{method: "POST", path: "/v1/tasks/" + failID + "/retry", token: op, body: object{"reason": "try again"}, status: 200})
	waitTaskUntil(t, f, failID, taskInState(tasker.TaskError))
	c.do(f, oaCall{method: "POST", path: "/v1/steps/" + boom + "/reset", token: op, status: 200})
	waitTaskUntil(t, f, failID, taskInState(tasker.TaskError))
	c.do(f, oaCall{method: "POST", path: "/v1/steps/" + boom + "/resolve", token: op, body: object{"reason": "charged by hand"}, status: 200})
	waitTaskUntil(t, f, failID, taskInState(tasker.TaskComplete))
	c.do(f, oaCall{method: "GET", path: "/v1/tasks/" + failID + "/transitions", token: viewer, status: 200})
	r = c.do(f, oaCall{method: "POST", path: "/v1/tasks", token: op, body: object{"namespace": "alpha", "name": "failing", "context": object{"order": 2}}, status: 201})
	r.json(t, &created)
	giveUpID := created.Task.ID
	waitTaskUntil(t, f, giveUpID, taskInState(tasker.TaskError))
	r = c.do(f, oaCall{method: "POST", path: "/v1/tasks/" + giveUpID + "/resolve", token: op, body: object{"reason": "refunded by hand"}, status: 200})
	var resolved struct{ Task tasker.Task }
	r.json(t, &resolved)
	if resolved.Task.State != tasker.TaskResolvedManually {
		t.Errorf("resolved task is %s, want resolved_manually", resolved.Task.State)
	}
	c.do(f, oaCall{method: "GET", path: "/v1/steps/" + boom + "/transitions", token: viewer, status: 200})
	c.do(f, oaCall{method: "GET", path: "/v1/tasks/" + failID + "/diagram", token: viewer, status: 200})

	// Cancelling a running task, and a step of another one.
	r = c.do(f, oaCall{method: "POST", path: "/v1/tasks", token: op, body: object{"namespace": "alpha", "name": "slow"}, status: 201})
	r.json(t, &created)
	slowID := created.Task.ID
	c.do(f, oaCall{method: "GET", path: "/v1/tasks/" + slowID, token: viewer, status: 200})
	c.do(f, oaCall{method: "POST", path: "/v1/tasks/" + slowID + "/cancel", token: op, body: object{"reason": "not needed"}, status: 200})
	c.do(f, oaCall{method: "POST", path: "/v1/tasks/" + slowID + "/cancel", token: op, status: 200})
	c.do(f, oaCall{method: "POST", path: "/v1/tasks/" + slowID + "/retry", token: op, status: 409, code: "invalid_transition"})
	r = c.do(f, oaCall{method: "POST", path: "/v1/tasks", token: alphaOp, body: object{"namespace": "alpha", "name": "slow"}, status: 201})
	r.json(t, &created)
	slow2 := waitTaskUntil(t, f, created.Task.ID, func(task *tasker.Task) bool { return len(task.Steps) == 2 })
	c.do(f, oaCall{method: "GET", path: "/v1/steps/" + slow2.Steps[1].ID, token: alphaOp, status: 200})
	c.do(f, oaCall{method: "POST", path: "/v1/steps/" + slow2.Steps[1].ID + "/cancel", token: alphaOp, body: object{}, status: 200})
	waitTaskUntil(t, f, slow2.ID, func(task *tasker.Task) bool { return task.Finished() })
	c.do(f, oaCall{method: "GET", path: "/v1/tasks/" + slow2.ID, token: alphaOp, status: 200})

	// The event log.
	r = c.do(f, oaCall{method: "GET", path: "/v1/events?task_id=" + flowID, token: viewer, status: 200})
	var evs struct {
		NextAfter int64 `json:"next_after"`
	}
	r.json(t, &evs)
	c.do(f, oaCall{method: "GET", path: fmt.Sprintf("/v1/events?after=%d&limit=5&event=task.*,step.completed&namespace=alpha&name=failing", evs.NextAfter), token: viewer, status: 200})
	c.do(f, oaCall{method: "GET", path: "/v1/events?limit=1000&event=*", token: alphaOp, status: 200})
	c.do(f, oaCall{method: "GET", path: "/v1/events?namespace=alpha", token: betaAdmin, status: 200})
	c.do(f, oaCall{method: "GET", path: "/v1/events?after=999999999", token: viewer, status: 200})
	c.do(f, oaCall{method: "GET", path: "/v1/events?event=step*x", token: viewer, status: 400, code: "invalid_parameter"})
	c.do(f, oaCall{method: "GET", path: "/v1/events?event=a,,b", token: viewer, status: 400, code: "invalid_parameter"})
	c.do(f, oaCall{method: "GET", path: "/v1/events?event=" + strings.Repeat("a,", 20) + "a", token: viewer, status: 400, code: "invalid_parameter"})
	c.do(f, oaCall{method: "GET", path: "/v1/events?event=task." + strings.Repeat("x", 124), token: viewer, status: 400, code: "invalid_parameter", lax: true})
	c.do(f, oaCall{method: "GET", path: "/v1/events?after=-1", token: viewer, status: 400, code: "invalid_parameter"})
	c.do(f, oaCall{method: "GET", path: "/v1/events?limit=1001", token: viewer, status: 400, code: "invalid_parameter"})

	// Analytics.
	c.do(f, oaCall{method: "GET", path: "/v1/analytics", token: viewer, status: 200})
	c.do(f, oaCall{method: "GET", path: "/v1/analytics?window=1h&bucket=5m&slowest=3&namespace=alpha", token: viewer, status: 200})
	c.do(f, oaCall{method: "GET", path: "/v1/analytics?window=744h&bucket=1h&slowest=0", token: alphaOp, status: 200})
	c.do(f, oaCall{method: "GET", path: "/v1/analytics?namespace=alpha", token: betaAdmin, status: 200})
	c.do(f, oaCall{method: "GET", path: "/v1/analytics?window=forever", token: viewer, status: 400, code: "invalid_parameter"})
	c.do(f, oaCall{method: "GET", path: "/v1/analytics?window=30s", token: viewer, status: 400, code: "invalid_parameter", lax: true})
	c.do(f, oaCall{method: "GET", path: "/v1/analytics?bucket=745h", token: viewer, status: 400, code: "invalid_parameter", lax: true})
	c.do(f, oaCall{method: "GET", path: "/v1/analytics?slowest=101", token: viewer, status: 400, code: "invalid_parameter"})

	// Every protected operation answers 401 without a token; every
	// operation with a body answers 413 and 415 (after the lookup of its
	// task or step, so with real ids).
	concrete := func(o oaOperation) string {
		id := flowID
		switch {
		case strings.HasPrefix(o.path, "/v1/steps/"):
			id = step
		case strings.HasPrefix(o.path, "/v1/deliveries/"):
			id = onceID
		}
		return strings.NewReplacer("{namespace}", "alpha", "{name}", "flow", "{version}", "1.0.0", "{id}", id).Replace(o.path)
	}
	for _, o := range s.operations() {
		if _, public := o.op["security"]; public {
			continue
		}
		c.do(f, oaCall{method: o.method, path: concrete(o), status: 401, code: "unauthenticated"})
		if _, ok := o.op["requestBody"]; ok {
			c.do(f, oaCall{method: o.method, path: concrete(o), token: admin, body: `{"reason":"` + strings.Repeat("x", 1<<20) + `"}`, status: 413, code: "body_too_large"})
			c.do(f, oaCall{method: o.method, path: concrete(o), token: admin, body: "x", headers: []string{"Content-Type", "text/yaml"}, status: 415, code: "unsupported_media_type"})
		}
	}

	// Routing problems.
	c.do(f, oaCall{method: "DELETE", path: "/v1/tasks", token: op, status: 405, code: "method_not_allowed"})
	c.do(f, oaCall{method: "GET", path: "/v1/nothing", token: op, status: 404, code: "not_found"})

	// Rate limits (429 with Retry-After), for tokens and for bad credentials.
	limited, err := api.New(api.Config{Client: f.client, Auth: auth.NewAuthenticator(f.client, nil, nil), RateLimit: 0.01, RateBurst: 1})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(limited.Handler())
	defer hs.Close()
	lf := &fixture{t: t, url: hs.URL, tokens: f.tokens}
	c.do(lf, oaCall{method: "GET", path: "/v1/analytics", token: viewer, status: 200})
	c.do(lf, oaCall{method: "GET", path: "/v1/analytics", token: viewer, status: 429, code: "rate_limited"})
	for _, o := range s.operations() {
		if _, public := o.op["security"]; !public {
			c.do(lf, oaCall{method: o.method, path: concrete(o), token: viewer, status: 429, code: "rate_limited"})
		}
	}
	c.do(lf, oaCall{method: "POST", path: "/v1/tasks", token: f.tokens["unknown"], body: object{"namespace": "alpha", "name": "flow"}, status: 401, code: "unauthenticated"})
	c.do(lf, oaCall{method: "POST", path: "/v1/tasks", token: f.tokens["unknown"], body: object{"namespace": "alpha", "name": "flow"}, status: 429, code: "rate_limited"})

	// A server whose database is gone (503) and that has no metrics (404).
	dead, err := tasker.Open(ctx, tasker.Config{Database: filepath.Join(t.TempDir(), "dead.db")})
	if err != nil {
		t.Fatal(err)
	}
	deadSrv, err := api.New(api.Config{Client: dead, DisableAuth: true})
	if err != nil {
		t.Fatal(err)
	}
	dead.Close()
	hs2 := httptest.NewServer(deadSrv.Handler())
	defer hs2.Close()
	df := &fixture{t: t, url: hs2.URL}
	c.do(df, oaCall{method: "GET", path: "/health/ready", status: 503, code: "unavailable"})
	c.do(df, oaCall{method: "GET", path: "/metrics", status: 404, code: "not_found"})
	c.do(df, oaCall{method: "GET", path: "/v1/tasks", status: 503, code: "unavailable"})

	// Every operation was seen answering a 2xx; list the documented
	// statuses the test did not produce (500 cannot be provoked, and 503
	// is provoked on a few routes only).
	var unexercised []string
	for _, o := range s.operations() {
		key := o.method + " " + o.path
		ok := false
		var missing []string
		for status := range asObject(o.op["responses"]) {
			n, _ := strconv.Atoi(status)
			if c.seen[key][n] {
				ok = ok || n < 300
			} else {
				missing = append(missing, status)
			}
		}
		if !ok {
			t.Errorf("%s: no successful answer was checked", key)
		}
		slices.Sort(missing)
		missing = slices.DeleteFunc(missing, func(s string) bool { return s == "500" || s == "503" })
		if len(missing) > 0 {
			unexercised = append(unexercised, fmt.Sprintf("%s %v", key, missing))
		}
	}
	if len(unexercised) > 0 {
		t.Logf("documented statuses not exercised: %s", strings.Join(unexercised, "; "))
	}
}

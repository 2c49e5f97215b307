package template

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/tasker-go/tasker/internal/retry"
)

// The canonical JSON form of a template: the YAML format without
// defaults and environments, every step setting resolved.
type (
	jsonTemplate struct {
		Namespace        string           `json:"namespace"`
		Name             string           `json:"name"`
		Version          string           `json:"version"`
		Description      string           `json:"description,omitempty"`
		IdentityStrategy IdentityStrategy `json:"identity_strategy"`
		Concurrency      int              `json:"concurrency"`
		ContextSchema    json.RawMessage  `json:"context_schema,omitempty"`
		Events           []jsonEvent      `json:"events,omitempty"`
		Subscriptions    []jsonSub        `json:"subscriptions,omitempty"`
		Steps            []jsonStep       `json:"steps"`
	}
	jsonSub struct {
		Name    string            `json:"name"`
		Events  []string          `json:"events"`
		URL     string            `json:"url"`
		Secret  string            `json:"secret"`
		Headers map[string]string `json:"headers,omitempty"`
		Retry   jsonRetry         `json:"retry"`
	}
	jsonEvent struct {
		Name        string          `json:"name"`
		Description string          `json:"description,omitempty"`
		Schema      json.RawMessage `json:"schema,omitempty"`
	}
	jsonStep struct {
		Name        string          `json:"name"`
		Description string          `json:"description,omitempty"`
		Handler     string          `json:"handler"`
		Config      json.RawMessage `json:"config,omitempty"`
		DependsOn   []string        `json:"depends_on,omitempty"`
		Retryable   bool            `json:"retryable"`
		Timeout     string          `json:"timeout"`
		Retry       jsonRetry       `json:"retry"`
	}
	jsonRetry struct {
		Limit   int         `json:"limit"`
		Backoff jsonBackoff `json:"backoff"`
	}
	jsonBackoff struct {
		Initial    string  `json:"initial"`
		Multiplier float64 `json:"multiplier"`
		Max        string  `json:"max"`
		Jitter     float64 `json:"jitter"`
	}
)

// MarshalJSON returns the template's canonical definition: deterministic
// JSON holding everything FromJSON needs to rebuild it, with every step's
// settings resolved (defaults and the selected environment applied),
// durations as Go duration strings ("5m0s") and schemas and configs as
// canonical JSON. Equal templates marshal to equal bytes.
func (t *Template) MarshalJSON() ([]byte, error) {
	out := jsonTemplate{
		Namespace:        t.Namespace,
		Name:             t.Name,
		Version:          t.Version,
		Description:      t.Description,
		IdentityStrategy: t.IdentityStrategy,
		Concurrency:      t.Concurrency,
		ContextSchema:    t.ContextSchema,
		Steps:            make([]jsonStep, len(t.Steps)),
	}
	for _, e := range t.Events {
		out.Events = append(out.Events, jsonEvent(e))
	}
	for _, s := range t.Subscriptions {
		out.Subscriptions = append(out.Subscriptions, jsonSub{Name: s.Name, Events: s.Events, URL: s.URL, Secret: s.Secret,
			Headers: s.Headers, Retry: toJSONRetry(s.Retry)})
	}
	for i, s := range t.Steps {
		out.Steps[i] = jsonStep{
			Name:        s.Name,
			Description: s.Description,
			Handler:     s.Handler,
			Config:      s.Config,
			DependsOn:   s.DependsOn,
			Retryable:   s.Retryable,
			Timeout:     s.Timeout.String(),
			Retry:       toJSONRetry(s.Retry),
		}
	}
	return json.Marshal(out)
}

func toJSONRetry(p retry.Policy) jsonRetry {
	return jsonRetry{
		Limit: p.Limit,
		Backoff: jsonBackoff{
			Initial:    p.Initial.String(),
			Multiplier: p.Multiplier,
			Max:        p.Max.String(),
			Jitter:     p.Jitter,
		},
	}
}

// FromJSON rebuilds a template from the output of MarshalJSON. The JSON is
// validated and compiled like a template file (it is the same format), so
// problems are a *ValidationError, with paths but without lines.
func FromJSON(data []byte) (*Template, error) {
	v, err := decodeJSON(data)
	if err != nil {
		return nil, fmt.Errorf("decode template JSON: %w", err)
	}
	return compile(fromJSONValue(v), ParseOptions{}, &reporter{})
}

// Digest returns the hex sha256 of the canonical definition (MarshalJSON):
// templates that differ only in formatting, key order, comments or
// settings spelled out with their default values have the same digest.
func (t *Template) Digest() string {
	b, err := t.MarshalJSON()
	if err != nil {
		// Unreachable: the definition holds only strings, numbers and
		// JSON that was already encoded.
		panic(fmt.Sprintf("template: marshal definition: %v", err))
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// mermaidReserved reports whether Mermaid refuses name as a node id.
func mermaidReserved(name string) bool {
	switch name {
	case "end", "graph", "flowchart", "subgraph", "style", "class", "classdef", "click", "linkstyle", "direction":
		return true
	}
	return false
}

// Mermaid returns the dependency graph as a Mermaid flowchart: "flowchart
// TD", one node per step in file order (id = step name, label = name and
// handler) and one edge "dependency --> step" per depends_on entry. Step
// names that are Mermaid keywords (such as "end") get their first letter
// upper-cased in the id, which cannot clash with a step name.
func (t *Template) Mermaid() string {
	var b strings.Builder
	b.WriteString("flowchart TD\n")
	id := func(name string) string {
		if mermaidReserved(name) {
			return strings.ToUpper(name[:1]) + name[1:]
		}
		return name
	}
	for _, s := range t.Steps {
		fmt.Fprintf(&b, "    %s[\"%s<br/>%s\"]\n", id(s.Name), mermaidEscape(s.Name), mermaidEscape(s.Handler))
	}
	for _, s := range t.Steps {
		for _, d := range s.DependsOn {
			fmt.Fprintf(&b, "    %s --> %s\n", id(d), id(s.Name))
		}
	}
	return b.String()
}

var mermaidEscaper = strings.NewReplacer(`"`, "#quot;", "<", "#lt;", ">", "#gt;")

func mermaidEscape(s string) string { return mermaidEscaper.Replace(s) }

// LevelsText lists the steps of each level, one line per level in file
// order, such as "level 0: a, b\nlevel 1: c\n".
func (t *Template) LevelsText() string {
	var b strings.Builder
	for l, group := range t.graph.LevelGroups() {
		names := make([]string, len(group))
		for i, s := range group {
			names[i] = t.Steps[s].Name
		}
		fmt.Fprintf(&b, "level %d: %s\n", l, strings.Join(names, ", "))
	}
	return b.String()
}

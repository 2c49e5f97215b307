package template

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/tasker-go/tasker/internal/dag"
	"github.com/tasker-go/tasker/internal/retry"
)

// IdentityStrategy decides the identity (deduplication) key of a task
// created from a template. A request for a task whose identity key already
// exists returns the existing task instead of creating a new one.
type IdentityStrategy string

// Identity strategies.
const (
	// IdentityAlwaysUnique gives every request a new identity: no
	// deduplication unless the request carries its own key. The default.
	IdentityAlwaysUnique IdentityStrategy = "always_unique"
	// IdentityHash derives the identity from the sha256 of the template
	// key and the canonical JSON of the context: the same context twice
	// is the same task.
	IdentityHash IdentityStrategy = "hash"
	// IdentityIdempotencyKey requires every request to carry an
	// idempotency key, which is the identity.
	IdentityIdempotencyKey IdentityStrategy = "idempotency_key"
)

// Limits and defaults of the template format.
const (
	// MaxSteps is the largest number of steps a template may have.
	MaxSteps = 10000
	// MaxConcurrency is the largest per-template concurrency.
	MaxConcurrency = 10000
	// MaxTimeout bounds step timeouts and retry delays.
	MaxTimeout = 24 * time.Hour
	// DefaultTimeout is a step's timeout when neither the step nor the
	// template's defaults set one.
	DefaultTimeout = 5 * time.Minute
	// MaxRetryLimit is the largest retry limit (attempts, the first included).
	MaxRetryLimit = 100
	// MaxMultiplier is the largest backoff multiplier.
	MaxMultiplier = 10
)

// Template is a compiled task template: validated, with the selected
// environment's overrides and the defaults applied to every step, its
// dependency graph built and its JSON Schemas compiled. Treat it as
// read-only; it is safe for concurrent use.
type Template struct {
	// Namespace, Name and Version identify the template; Version is a
	// semantic version without a leading "v".
	Namespace string
	Name      string
	Version   string
	// Description is free text, empty when absent.
	Description string
	// IdentityStrategy decides task deduplication. Default IdentityAlwaysUnique.
	IdentityStrategy IdentityStrategy
	// Concurrency is the maximum number of this template's steps running
	// at once in one process; 0 (the default) means no per-template limit.
	Concurrency int
	// ContextSchema is the JSON Schema of the task context as canonical
	// JSON, nil when the template has none.
	ContextSchema json.RawMessage
	// Events are the custom events the template's handlers may publish,
	// in file order.
	Events []EventDecl
	// Subscriptions are the webhooks that receive the events of this
	// template's tasks, in file order.
	Subscriptions []Subscription
	// Steps are the steps in file order: Steps[i].Index == i.
	Steps []Step

	graph         *dag.Graph
	index         map[string]int
	contextSchema *jsonschema.Schema            // nil when ContextSchema is nil
	events        map[string]*jsonschema.Schema // declared name -> schema (nil: no schema)
}

// EventDecl declares a custom event.
type EventDecl struct {
	// Name passes event.ValidateCustomName, such as "order.placed".
	Name string
	// Description is free text, empty when absent.
	Description string
	// Schema is the JSON Schema of the event's payload as canonical JSON,
	// nil when the payload is not checked.
	Schema json.RawMessage
}

// Step is one step of a template, with every setting resolved.
type Step struct {
	// Index is the step's position in Template.Steps and its node in Graph.
	Index int
	// Name is unique within the template.
	Name string
	// Description is free text, empty when absent.
	Description string
	// Handler names the handler that performs the step.
	Handler string
	// Config is passed to the handler: canonical JSON (sorted keys), nil
	// when the template gives none (never the JSON null).
	Config json.RawMessage
	// DependsOn lists the names of the steps this one waits for, as written.
	DependsOn []string
	// Parents are the indices of DependsOn, ascending; Children are the
	// indices of the steps that depend on this one, ascending.
	Parents  []int
	Children []int
	// Level is the length of the longest dependency path from a root step
	// (a step without dependencies) to this one; roots are at level 0.
	Level int
	// Retryable is false when a failure must never be retried. Default true.
	Retryable bool
	// Retry is the resolved retry policy: step, then template defaults,
	// then retry.Default(), field by field. Retry.Limit is 1 when
	// Retryable is false.
	Retry retry.Policy
	// Timeout bounds one attempt. Default 5m, at most 24h.
	Timeout time.Duration
}

// ParseOptions are the per-call knobs of Parse and ParseFile.
type ParseOptions struct {
	// Environment selects the template's environment overrides to apply;
	// "" applies none. Naming an environment the template does not define
	// is a problem.
	Environment string
	// KnownHandler reports whether a handler name is registered; nil
	// leaves handler names unchecked.
	KnownHandler func(name string) bool
	// CheckConfig validates a step's config for its handler, given the
	// names of the step's dependencies; an error is a problem at the
	// step's config. Nil leaves configs unchecked.
	CheckConfig func(handler string, config json.RawMessage, dependsOn []string) error
}

// Parse parses, validates and compiles the YAML task template in data.
// filename is only used in problems. Every problem found is reported in a
// *ValidationError.
func Parse(filename string, data []byte, opts ParseOptions) (*Template, error) {
	r := &reporter{file: filename}
	root := parseYAML(data, r)
	if root == nil {
		return nil, r.err(nil)
	}
	return compile(root, opts, r)
}

// ParseFile reads the file at path and parses it with Parse, naming the
// file path in problems.
func ParseFile(path string, opts ParseOptions) (*Template, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read template: %w", err)
	}
	return Parse(path, data, opts)
}

// Key returns "namespace/name@version".
func (t *Template) Key() string {
	return t.Namespace + "/" + t.Name + "@" + t.Version
}

// Graph returns the dependency graph over the step indices.
func (t *Template) Graph() *dag.Graph { return t.graph }

// StepIndex returns the index of the step called name.
func (t *Template) StepIndex(name string) (int, bool) {
	i, ok := t.index[name]
	return i, ok
}

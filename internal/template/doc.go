// Package template parses, validates and compiles YAML task templates.
//
// A task template declares the steps of a workflow, their dependencies,
// handlers, handler configuration, timeouts and retry policies, a JSON
// Schema for the task context and the custom events its handlers may
// publish. docs/templates.md is the format reference.
//
// # Parsing
//
// Parse and ParseFile read one YAML document with goccy/go-yaml, keep the
// position of every node and check the whole file before giving up, so a
// *ValidationError lists every problem found, each with its file, line,
// path (such as "steps[3].depends_on[1]") and step. Unknown keys are
// problems, which catches typos such as "depend_on".
//
// # Compiling
//
// A valid template is compiled into a Template: the selected environment's
// overrides are applied, every step's settings are resolved against the
// template's defaults and the built-in defaults, the dependency graph is
// built (package dag) and the JSON Schemas are compiled once, each with a
// compiler of its own. The result is immutable and safe for concurrent use.
//
// # Canonical form
//
// MarshalJSON gives a template's canonical definition: deterministic JSON
// with every setting resolved, which FromJSON turns back into an equal
// Template and whose sha256 is the template's Digest.
package template

package tasker

import (
	"github.com/tasker-go/tasker/internal/builtin"
	"github.com/tasker-go/tasker/internal/template"
)

// Template is a compiled task template (see docs/templates.md). Treat it as
// read-only.
type Template = template.Template

// TemplateStep is one step of a Template.
type TemplateStep = template.Step

// IdentityStrategy decides how duplicate task requests are recognised:
// "always_unique" (the default), "hash" or "idempotency_key".
type IdentityStrategy = template.IdentityStrategy

// Identity strategies.
const (
	IdentityAlwaysUnique   = template.IdentityAlwaysUnique
	IdentityHash           = template.IdentityHash
	IdentityIdempotencyKey = template.IdentityIdempotencyKey
)

// TemplateOpts are options for parsing a template.
type TemplateOpts struct {
	// Environment selects the template's per-environment overrides; empty
	// applies none.
	Environment string
	// KnownHandlers, when set, rejects steps whose handler is not listed.
	KnownHandlers []string
}

func (o *TemplateOpts) parseOptions() template.ParseOptions {
	if o == nil {
		return template.ParseOptions{CheckConfig: builtin.CheckConfig}
	}
	po := template.ParseOptions{Environment: o.Environment, CheckConfig: builtin.CheckConfig}
	if o.KnownHandlers != nil {
		known := map[string]bool{}
		for _, h := range o.KnownHandlers {
			known[h] = true
		}
		po.KnownHandler = func(name string) bool { return known[name] }
	}
	return po
}

// ParseTemplate parses and validates a YAML template. filename is used in
// error messages. A template that fails validation returns a *TemplateError
// listing every problem with its line.
func ParseTemplate(filename string, data []byte, opts *TemplateOpts) (*Template, error) {
	return template.Parse(filename, data, opts.parseOptions())
}

// ParseTemplateFile reads, parses and validates a YAML template file.
func ParseTemplateFile(path string, opts *TemplateOpts) (*Template, error) {
	return template.ParseFile(path, opts.parseOptions())
}

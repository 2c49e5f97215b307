package template

import (
	"errors"
	"maps"
	"slices"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/tasker-go/tasker/internal/dag"
	"github.com/tasker-go/tasker/internal/event"
	"github.com/tasker-go/tasker/internal/retry"
)

// maxCycles bounds how many distinct dependency cycles are reported.
const maxCycles = 10

// compile checks the node tree, resolves cross references, the selected
// environment and the defaults, builds the graph and compiles the schemas.
func compile(root *node, opts ParseOptions, r *reporter) (*Template, error) {
	spec := (&checker{r: r}).template(root)
	t := &Template{
		Namespace:        spec.namespace.v,
		Name:             spec.name.v,
		Version:          spec.version.v,
		Description:      spec.description.v,
		IdentityStrategy: IdentityAlwaysUnique,
		Concurrency:      spec.concurrency.v,
		index:            make(map[string]int, len(spec.steps)),
	}
	if spec.identity.set {
		t.IdentityStrategy = spec.identity.v
	}

	written := make(map[string]bool, len(spec.steps)) // every name, valid or not
	for i, s := range spec.steps {
		if n := s.name; n.at.node != nil && n.at.node.kind == kindString {
			written[n.at.node.value.(string)] = true
		}
		if !s.name.set {
			continue
		}
		if j, dup := t.index[s.name.v]; dup {
			r.addAt(s.name.at, "duplicate step name %q, already used by steps[%d]", s.name.v, j)
			continue
		}
		t.index[s.name.v] = i
	}

	names := &suggester{index: t.index}
	env := selectEnvironment(spec, opts.Environment, r)
	overrides := checkOverrides(spec, env, t.index, names, r)
	defs := spec.defaults
	if env != nil {
		defs = env.defaults.over(defs)
	}

	n := len(spec.steps)
	t.Steps = make([]Step, n)
	parents := make([][]int, n)
	depLocs := make([][]loc, n)
	conflicts := map[[2]string]bool{}
	for i, base := range spec.steps {
		s := base
		if ov := overrides[i]; ov != nil {
			s = ov.over(base)
		}
		st := Step{Index: i, Name: s.name.v, Description: s.description.v, Handler: s.handler.v}
		if s.handler.set && opts.KnownHandler != nil && !opts.KnownHandler(s.handler.v) {
			r.addAt(s.handler.at, "unknown handler %q", s.handler.v)
		}
		if s.config.set && s.config.v != nil {
			raw, err := canonicalJSON(s.config.v)
			if err != nil {
				r.addAt(s.config.at, "cannot encode config as JSON: %v", err)
			}
			st.Config = raw
		}

		if s.handler.set && opts.CheckConfig != nil && (opts.KnownHandler == nil || opts.KnownHandler(s.handler.v)) {
			deps := make([]string, 0, len(base.dependsOn))
			for _, d := range base.dependsOn {
				deps = append(deps, d.v)
			}
			if err := opts.CheckConfig(s.handler.v, st.Config, deps); err != nil {
				at := s.config.at
				if !s.config.set {
					at = s.handler.at
				}
				for _, line := range strings.Split(err.Error(), "\n") {
					r.addAt(at, "%s", line)
				}
			}
		}
		seen := make(map[string]bool, len(base.dependsOn))
		for _, d := range base.dependsOn {
			st.DependsOn = append(st.DependsOn, d.v)
			p, known := t.index[d.v]
			switch {
			case seen[d.v]:
				r.addAt(d.at, "%q is listed twice in depends_on", d.v)
			case base.name.set && d.v == base.name.v:
				r.addAt(d.at, "a step cannot depend on itself")
			case !known && written[d.v]:
				// The name itself is wrong and already reported.
			case !known:
				r.addAt(d.at, "unknown step %q%s", d.v, names.suggest(d.v))
			default:
				parents[i] = append(parents[i], p)
				depLocs[i] = append(depLocs[i], d.at)
			}
			seen[d.v] = true
		}

		st.Retryable = true
		if rb := s.retryable.or(defs.retryable); rb.set {
			st.Retryable = rb.v
		}
		st.Timeout = DefaultTimeout
		if to := s.timeout.or(defs.timeout); to.set {
			st.Timeout = to.v
		}
		st.Retry = resolveRetry(s.retry.over(defs.retry), r, conflicts)
		if !st.Retryable {
			st.Retry.Limit = 1
		}
		t.Steps[i] = st
	}

	compileEvents(t, spec.events, r)
	declared := make(map[string]bool, len(t.Events))
	for _, e := range t.Events {
		declared[e.Name] = true
	}
	t.Subscriptions = compileSubscriptions(spec.subscriptions, declared, r)
	if spec.contextSchema.set {
		t.contextSchema, t.ContextSchema = compileSchema("context_schema.json", spec.contextSchema, r)
	}

	t.graph = buildGraph(t, parents, depLocs, r)
	if err := r.err(root); err != nil {
		return nil, err
	}
	for i := range t.Steps {
		st := &t.Steps[i]
		st.Parents = t.graph.Parents(i)
		st.Children = t.graph.Children(i)
	}
	for i, l := range t.graph.Levels() {
		t.Steps[i].Level = l
	}
	return t, nil
}

// selectEnvironment returns the environment named name, nil for "" or
// when the template does not define it (a problem).
func selectEnvironment(spec *templateSpec, name string, r *reporter) *envSpec {
	if name == "" {
		return nil
	}
	if env := spec.envs[name]; env != nil {
		return env
	}
	defined := "none"
	if len(spec.envNames) > 0 {
		defined = strings.Join(spec.envNames, ", ")
	}
	at := spec.envsAt
	if at.path == nil {
		at.path = (*path)(nil).child("environments")
	}
	r.addAt(at, "unknown environment %q (defined: %s)", name, defined)
	return nil
}

// checkOverrides checks the step overrides of every environment and
// returns those of env by step index.
func checkOverrides(spec *templateSpec, env *envSpec, index map[string]int, names *suggester, r *reporter) []*stepSpec {
	out := make([]*stepSpec, len(spec.steps))
	for _, name := range spec.envNames {
		e := spec.envs[name]
		seen := map[string]bool{}
		for k := range e.steps {
			s := &e.steps[k]
			if !s.name.set {
				continue
			}
			i, ok := index[s.name.v]
			switch {
			case !ok:
				r.addAt(s.name.at, "unknown step %q%s", s.name.v, names.suggest(s.name.v))
			case seen[s.name.v]:
				r.addAt(s.name.at, "step %q is overridden twice in environment %q", s.name.v, name)
			default:
				seen[s.name.v] = true
				if e == env {
					out[i] = s
				}
			}
		}
	}
	return out
}

// resolveRetry fills the unset fields from retry.Default() and checks that
// the initial delay does not exceed the maximum. The same conflict between
// the same two settings is reported once.
func resolveRetry(rs retrySpec, r *reporter, reported map[[2]string]bool) retry.Policy {
	return resolveRetryFrom(retry.Default(), rs, r, reported)
}

// resolveRetryFrom applies the fields set in rs over base.
func resolveRetryFrom(base retry.Policy, rs retrySpec, r *reporter, reported map[[2]string]bool) retry.Policy {
	p := base
	if rs.limit.set {
		p.Limit = rs.limit.v
	}
	if rs.initial.set {
		p.Initial = rs.initial.v
	}
	if rs.multiplier.set {
		p.Multiplier = rs.multiplier.v
	}
	if rs.max.set {
		p.Max = rs.max.v
	}
	if rs.jitter.set {
		p.Jitter = rs.jitter.v
	}
	if p.Initial > p.Max {
		key := [2]string{rs.initial.at.path.String(), rs.max.at.path.String()}
		if !reported[key] {
			reported[key] = true
			at := rs.initial.at
			if !rs.initial.set || (isStepPath(rs.max.at.path) && !isStepPath(at.path)) {
				at = rs.max.at
			}
			r.addAt(at, "backoff initial %s is greater than backoff max %s",
				shortDuration(p.Initial), shortDuration(p.Max))
		}
	}
	return p
}

// isStepPath reports whether p is inside a step or a step override.
func isStepPath(p *path) bool {
	e := p.elems()
	return (len(e) > 1 && e[0].key == "steps") || (len(e) > 3 && e[0].key == "environments" && e[2].key == "steps")
}

func compileEvents(t *Template, events []eventSpec, r *reporter) {
	t.events = make(map[string]*jsonschema.Schema, len(events))
	first := map[string]int{}
	for i, e := range events {
		if !e.name.set {
			continue
		}
		if err := event.ValidateCustomName(e.name.v); err != nil {
			r.addAt(e.name.at, "%v", err)
			continue
		}
		if j, dup := first[e.name.v]; dup {
			r.addAt(e.name.at, "duplicate event %q, already declared by events[%d]", e.name.v, j)
			continue
		}
		first[e.name.v] = i
		decl := EventDecl{Name: e.name.v, Description: e.description.v}
		var sch *jsonschema.Schema
		if e.schema.set {
			sch, decl.Schema = compileSchema("events/"+e.name.v+".json", e.schema, r)
		}
		t.events[decl.Name] = sch
		t.Events = append(t.Events, decl)
	}
}

// buildGraph builds the dependency graph, reporting up to maxCycles
// cycles: after each one, the edge it was reported at is dropped and the
// graph is built again.
func buildGraph(t *Template, parents [][]int, depLocs [][]loc, r *reporter) *dag.Graph {
	name := func(i int) string { return t.Steps[i].Name }
	for range maxCycles {
		g, err := dag.New(len(parents), parents)
		var ce *dag.CycleError
		switch {
		case err == nil:
			return g
		case !errors.As(err, &ce):
			r.add(0, 0, nil, "dependency graph: %v", err) // unreachable: edges are checked above
			return nil
		}
		// Cycle[0] depends on the node before it in the cycle: report the
		// depends_on entry naming that node.
		first, pred := ce.Cycle[0], ce.Cycle[len(ce.Cycle)-2]
		k := slices.Index(parents[first], pred)
		r.addAt(depLocs[first][k], "dependency cycle: %s", ce.Format(name))
		parents[first] = slices.Delete(parents[first], k, k+1)
		depLocs[first] = slices.Delete(depLocs[first], k, k+1)
	}
	return nil
}

// suggester proposes step names for unknown ones; it gives up after
// maxSuggestions so that a template full of typos stays linear.
type suggester struct {
	index map[string]int
	names []string
	used  int
}

const maxSuggestions = 100

func (s *suggester) suggest(name string) string {
	if s.used >= maxSuggestions {
		return ""
	}
	s.used++
	if s.names == nil {
		s.names = slices.Sorted(maps.Keys(s.index))
	}
	return suggest(name, s.names)
}

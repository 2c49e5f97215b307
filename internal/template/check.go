package template

import (
	"cmp"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
	"time"
)

// reporter collects problems while a template is checked.
type reporter struct {
	file     string
	problems []pending
}

type pending struct {
	line, col int
	path      *path
	msg       string
}

func (r *reporter) add(line, col int, p *path, format string, args ...any) {
	r.problems = append(r.problems, pending{line: line, col: col, path: p, msg: fmt.Sprintf(format, args...)})
}

func (r *reporter) addAt(at loc, format string, args ...any) {
	r.add(at.line, at.col, at.path, format, args...)
}

// err returns the problems as a *ValidationError sorted by position
// (problems without a line last), or nil. root names the steps problems
// are inside.
func (r *reporter) err(root *node) error {
	if len(r.problems) == 0 {
		return nil
	}
	out := make([]Problem, len(r.problems))
	for i, p := range r.problems {
		out[i] = Problem{
			File: r.file, Line: p.line, Column: p.col,
			Path: p.path.String(), Step: stepName(root, p.path), Message: p.msg,
		}
	}
	slices.SortStableFunc(out, func(a, b Problem) int {
		if (a.Line == 0) != (b.Line == 0) {
			return cmp.Compare(b.Line, a.Line) // line 0 last
		}
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
	})
	out = slices.CompactFunc(out, func(a, b Problem) bool { return a == b })
	return &ValidationError{Problems: out}
}

// stepName returns the name of the step (or step override) p is inside.
func stepName(root *node, p *path) string {
	elems := p.elems()
	var depth int
	switch {
	case len(elems) >= 2 && elems[0].key == "steps" && elems[1].index >= 0:
		depth = 2
	case len(elems) >= 4 && elems[0].key == "environments" && elems[2].key == "steps" && elems[3].index >= 0:
		depth = 4
	default:
		return ""
	}
	n := root
	for _, e := range elems[:depth] {
		switch {
		case n == nil:
			return ""
		case e.index >= 0:
			if n.kind != kindSeq || e.index >= len(n.items) {
				return ""
			}
			n = n.items[e.index]
		default:
			en := n.get(e.key)
			if en == nil {
				return ""
			}
			n = en.value
		}
	}
	if e := n.get("name"); e != nil && e.value.kind == kindString {
		return e.value.value.(string)
	}
	return ""
}

// loc is where a value was written; the zero loc is a built-in default.
type loc struct {
	line, col int
	path      *path
	node      *node
}

func locOf(n *node, p *path) loc { return loc{line: n.line, col: n.col, path: p, node: n} }

// opt is an optional setting and where it was written.
type opt[T any] struct {
	v   T
	set bool
	at  loc
}

// or returns o when it is set, fallback otherwise.
func (o opt[T]) or(fallback opt[T]) opt[T] {
	if o.set {
		return o
	}
	return fallback
}

func some[T any](v T, at loc) opt[T] { return opt[T]{v: v, set: true, at: at} }

// The unresolved template, as written.
type (
	templateSpec struct {
		root                                  *node
		namespace, name, version, description opt[string]
		identity                              opt[IdentityStrategy]
		concurrency                           opt[int]
		contextSchema                         opt[any]
		defaults                              defaultsSpec
		events                                []eventSpec
		subscriptions                         []subscriptionSpec
		steps                                 []stepSpec
		envs                                  map[string]*envSpec
		envNames                              []string
		envsAt                                loc
	}
	defaultsSpec struct {
		retryable opt[bool]
		timeout   opt[time.Duration]
		retry     retrySpec
	}
	retrySpec struct {
		limit      opt[int]
		initial    opt[time.Duration]
		multiplier opt[float64]
		max        opt[time.Duration]
		jitter     opt[float64]
	}
	stepSpec struct {
		at          loc
		name        opt[string]
		description opt[string]
		handler     opt[string]
		config      opt[any]
		dependsOn   []opt[string]
		retryable   opt[bool]
		timeout     opt[time.Duration]
		retry       retrySpec
	}
	eventSpec struct {
		at          loc
		name        opt[string]
		description opt[string]
		schema      opt[any]
	}
	envSpec struct {
		at       loc
		defaults defaultsSpec
		steps    []stepSpec
	}
)

// over returns d with every unset field taken from base.
func (d defaultsSpec) over(base defaultsSpec) defaultsSpec {
	return defaultsSpec{
		retryable: d.retryable.or(base.retryable),
		timeout:   d.timeout.or(base.timeout),
		retry:     d.retry.over(base.retry),
	}
}

// over returns r with every unset field taken from base.
func (r retrySpec) over(base retrySpec) retrySpec {
	return retrySpec{
		limit:      r.limit.or(base.limit),
		initial:    r.initial.or(base.initial),
		multiplier: r.multiplier.or(base.multiplier),
		max:        r.max.or(base.max),
		jitter:     r.jitter.or(base.jitter),
	}
}

// over applies the environment override s to the step base.
func (s stepSpec) over(base stepSpec) stepSpec {
	out := base
	out.description = s.description.or(base.description)
	out.handler = s.handler.or(base.handler)
	out.retryable = s.retryable.or(base.retryable)
	out.timeout = s.timeout.or(base.timeout)
	out.retry = s.retry.over(base.retry)
	if s.config.set {
		if base.config.set {
			out.config = some(deepMerge(base.config.v, s.config.v), s.config.at)
		} else {
			out.config = s.config
		}
	}
	return out
}

// deepMerge merges over into base without modifying either: mappings merge
// key by key, any other value replaces.
func deepMerge(base, over any) any {
	bm, ok1 := base.(map[string]any)
	om, ok2 := over.(map[string]any)
	if !ok1 || !ok2 {
		return over
	}
	out := make(map[string]any, len(bm)+len(om))
	for k, v := range bm {
		out[k] = v
	}
	for k, v := range om {
		if b, ok := out[k]; ok {
			out[k] = deepMerge(b, v)
		} else {
			out[k] = v
		}
	}
	return out
}

var (
	nameRE   = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,63}$`)
	semverRE = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)` +
		`(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?` +
		`(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$`)
)

// The keys of each mapping of the format.
func templateKeys() []string {
	return []string{"namespace", "name", "version", "description", "identity_strategy", "concurrency",
		"context_schema", "defaults", "events", "subscriptions", "steps", "environments"}
}
func defaultsKeys() []string    { return []string{"timeout", "retryable", "retry"} }
func retryKeys() []string       { return []string{"limit", "backoff"} }
func backoffKeys() []string     { return []string{"initial", "multiplier", "max", "jitter"} }
func eventKeys() []string       { return []string{"name", "description", "schema"} }
func environmentKeys() []string { return []string{"defaults", "steps"} }
func stepKeys() []string {
	return []string{"name", "description", "handler", "config", "depends_on", "retryable", "timeout", "retry"}
}

// checker turns the node tree into a templateSpec, reporting every
// problem that can be seen locally: types, syntax, ranges, unknown and
// missing keys. Cross references are checked by compile.
type checker struct {
	r *reporter
}

// obj is a mapping being read.
type obj struct {
	c *checker
	n *node
	p *path
	m map[string]*entry // nil when n is not a mapping
}

// object checks that n is a mapping whose keys are all allowed.
func (c *checker) object(n *node, p *path, what string, allowed []string) *obj {
	o := &obj{c: c, n: n, p: p}
	if n.kind != kindMap {
		c.r.add(n.line, n.col, p, "%s must be a mapping, got %s", what, n.describe())
		return o
	}
	o.m = make(map[string]*entry, len(n.entries))
	for i := range n.entries {
		e := &n.entries[i]
		switch {
		case e.badKey != "":
			c.r.add(e.line, e.col, p.child(e.badKey), "key %s must be a string", e.badKey)
		case !slices.Contains(allowed, e.key):
			c.r.add(e.line, e.col, p.child(e.key), "unknown key %q%s", e.key, suggest(e.key, allowed))
		default:
			o.m[e.key] = e
		}
	}
	return o
}

// suggest returns ` (did you mean "x"?)` for the allowed key closest to key.
func suggest(key string, allowed []string) string {
	best, bestDist := "", 3
	for _, a := range allowed {
		if d := editDistance(key, a); d < bestDist && d < len(key) {
			best, bestDist = a, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// value returns the value of key and its path; the node is nil when the
// key is absent or null (an explicit null is the same as an absent key).
func (o *obj) value(key string) (*node, *path) {
	p := o.p.child(key)
	e := o.m[key]
	if e == nil || e.value.isNull() {
		return nil, p
	}
	return e.value, p
}

// require reports key when it is absent or null.
func (o *obj) require(key string) {
	if o.m == nil {
		return
	}
	if e := o.m[key]; e == nil {
		o.c.r.add(o.n.line, o.n.col, o.p, "missing required key %q", key)
	} else if e.value.isNull() {
		o.c.r.add(e.line, e.col, o.p.child(key), "missing value")
	}
}

func (o *obj) str(key string) opt[string] {
	n, p := o.value(key)
	if n == nil {
		return opt[string]{}
	}
	if n.kind != kindString {
		o.c.r.add(n.line, n.col, p, "must be a string, got %s", n.describe())
		return opt[string]{}
	}
	return some(n.value.(string), locOf(n, p))
}

// name reads a name: namespace, template name or step name.
func (o *obj) name(key string) opt[string] {
	s := o.str(key)
	if s.set && !nameRE.MatchString(s.v) {
		o.c.r.addAt(s.at, "invalid name %q: use 1 to 64 lowercase letters, digits, \"_\" or \"-\", starting with a letter", s.v)
		s.set = false
	}
	return s
}

func (o *obj) version(key string) opt[string] {
	n, p := o.value(key)
	if n == nil {
		return opt[string]{}
	}
	if n.kind == kindInt || n.kind == kindFloat {
		o.c.r.add(n.line, n.col, p, "%s is not a semantic version: use MAJOR.MINOR.PATCH such as \"1.0.0\" (quote it)", n.text())
		return opt[string]{}
	}
	s := o.str(key)
	switch {
	case !s.set:
	case strings.HasPrefix(s.v, "v") && semverRE.MatchString(s.v[1:]):
		o.c.r.addAt(s.at, "%q is not a semantic version: drop the leading \"v\"", s.v)
		s.set = false
	case !semverRE.MatchString(s.v):
		o.c.r.addAt(s.at, "%q is not a semantic version: use MAJOR.MINOR.PATCH such as \"1.0.0\" (semver.org)", s.v)
		s.set = false
	}
	return s
}

func (o *obj) boolean(key string) opt[bool] {
	n, p := o.value(key)
	if n == nil {
		return opt[bool]{}
	}
	if n.kind != kindBool {
		o.c.r.add(n.line, n.col, p, "must be true or false, got %s", n.describe())
		return opt[bool]{}
	}
	return some(n.value.(bool), locOf(n, p))
}

// integer reads an integer in [lo, hi].
func (o *obj) integer(key string, lo, hi int) opt[int] {
	n, p := o.value(key)
	if n == nil {
		return opt[int]{}
	}
	var v int64
	switch x := n.value.(type) {
	case int64:
		v = x
	case uint64:
		v = math.MaxInt64
	default:
		o.c.r.add(n.line, n.col, p, "must be an integer, got %s", n.describe())
		return opt[int]{}
	}
	if v < int64(lo) || v > int64(hi) {
		o.c.r.add(n.line, n.col, p, "must be between %d and %d, got %s", lo, hi, n.text())
		return opt[int]{}
	}
	return some(int(v), locOf(n, p))
}

// number reads a number in [lo, hi].
func (o *obj) number(key string, lo, hi float64) opt[float64] {
	n, p := o.value(key)
	if n == nil {
		return opt[float64]{}
	}
	if n.kind != kindInt && n.kind != kindFloat {
		o.c.r.add(n.line, n.col, p, "must be a number, got %s", n.describe())
		return opt[float64]{}
	}
	v := toFloat(n.value)
	if !(v >= lo && v <= hi) { // NaN fails too
		o.c.r.add(n.line, n.col, p, "must be between %v and %v, got %s", lo, hi, n.text())
		return opt[float64]{}
	}
	return some(v, locOf(n, p))
}

// duration reads a Go duration string in (0, hi].
func (o *obj) duration(key string, hi time.Duration) opt[time.Duration] {
	n, p := o.value(key)
	if n == nil {
		return opt[time.Duration]{}
	}
	if n.kind != kindString {
		o.c.r.add(n.line, n.col, p, "must be a duration string such as \"30s\", got %s", n.describe())
		return opt[time.Duration]{}
	}
	s := n.value.(string)
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		o.c.r.add(n.line, n.col, p, "invalid duration %q: use a Go duration such as \"30s\", \"1m30s\" or \"500ms\"", s)
	case d <= 0:
		o.c.r.add(n.line, n.col, p, "must be greater than 0, got %q", s)
	case d > hi:
		o.c.r.add(n.line, n.col, p, "must be at most %s, got %q", shortDuration(hi), s)
	default:
		return some(d, locOf(n, p))
	}
	return opt[time.Duration]{}
}

// shortDuration formats d without zero minutes and seconds: "24h", "5m".
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// json reads any value that must become JSON.
func (o *obj) json(key string) opt[any] {
	n, p := o.value(key)
	if n == nil {
		return opt[any]{}
	}
	return some(toJSONValue(n, p, o.c.r), locOf(n, p))
}

// list returns the items of a list and their paths; nil when absent.
func (o *obj) list(key, what string) ([]*node, *path) {
	n, p := o.value(key)
	if n == nil {
		return nil, p
	}
	if n.kind != kindSeq {
		o.c.r.add(n.line, n.col, p, "must be a list of %s, got %s", what, n.describe())
		return nil, p
	}
	return n.items, p
}

func (c *checker) template(root *node) *templateSpec {
	t := &templateSpec{root: root}
	o := c.object(root, nil, "a template", templateKeys())
	if o.m == nil {
		return t
	}
	for _, k := range []string{"namespace", "name", "version", "steps"} {
		o.require(k)
	}
	t.namespace = o.name("namespace")
	t.name = o.name("name")
	t.version = o.version("version")
	t.description = o.str("description")
	if s := o.str("identity_strategy"); s.set {
		switch id := IdentityStrategy(s.v); id {
		case IdentityAlwaysUnique, IdentityHash, IdentityIdempotencyKey:
			t.identity = some(id, s.at)
		default:
			c.r.addAt(s.at, "unknown identity strategy %q: use %s, %s or %s",
				s.v, IdentityAlwaysUnique, IdentityHash, IdentityIdempotencyKey)
		}
	}
	t.concurrency = o.integer("concurrency", 0, MaxConcurrency)
	t.contextSchema = o.json("context_schema")
	if n, p := o.value("defaults"); n != nil {
		t.defaults = c.defaults(n, p)
	}
	if items, p := o.list("events", "events"); items != nil {
		for i, item := range items {
			t.events = append(t.events, c.event(item, p.at(i)))
		}
	}
	if items, p := o.list("subscriptions", "subscriptions"); items != nil {
		if len(items) > MaxSubscriptions {
			n, _ := o.value("subscriptions")
			c.r.add(n.line, n.col, p, "too many subscriptions: %d, at most %d", len(items), MaxSubscriptions)
		}
		for i, item := range items {
			t.subscriptions = append(t.subscriptions, c.subscription(item, p.at(i), false))
		}
	}
	if n, p := o.value("steps"); n != nil {
		items, _ := o.list("steps", "steps")
		switch {
		case n.kind != kindSeq:
		case len(items) == 0:
			c.r.add(n.line, n.col, p, "a template needs at least one step")
		case len(items) > MaxSteps:
			c.r.add(n.line, n.col, p, "too many steps: %d, at most %d", len(items), MaxSteps)
		}
		t.steps = make([]stepSpec, len(items))
		for i, item := range items {
			t.steps[i] = c.step(item, p.at(i), false)
		}
	}
	if e := o.m["environments"]; e != nil {
		n, p := o.value("environments")
		t.envsAt = loc{line: e.line, col: e.col, path: p}
		if n != nil {
			c.environments(t, n, p)
		}
	}
	return t
}

func (c *checker) defaults(n *node, p *path) defaultsSpec {
	o := c.object(n, p, "defaults", defaultsKeys())
	d := defaultsSpec{
		retryable: o.boolean("retryable"),
		timeout:   o.duration("timeout", MaxTimeout),
	}
	if n, p := o.value("retry"); n != nil {
		d.retry = c.retry(n, p)
	}
	return d
}

func (c *checker) retry(n *node, p *path) retrySpec {
	o := c.object(n, p, "retry", retryKeys())
	r := retrySpec{limit: o.integer("limit", 1, MaxRetryLimit)}
	if n, p := o.value("backoff"); n != nil {
		b := c.object(n, p, "backoff", backoffKeys())
		r.initial = b.duration("initial", MaxTimeout)
		r.multiplier = b.number("multiplier", 1, MaxMultiplier)
		r.max = b.duration("max", MaxTimeout)
		r.jitter = b.number("jitter", 0, 1)
	}
	return r
}

// step reads a step, or a step's environment override.
func (c *checker) step(n *node, p *path, override bool) stepSpec {
	what := "a step"
	if override {
		what = "a step override"
	}
	o := c.object(n, p, what, stepKeys())
	s := stepSpec{at: locOf(n, p)}
	o.require("name")
	if override {
		s.name = o.str("name")
		if e := o.m["depends_on"]; e != nil {
			c.r.add(e.line, e.col, p.child("depends_on"), "depends_on cannot be overridden per environment")
		}
	} else {
		o.require("handler")
		s.name = o.name("name")
		deps, dp := o.list("depends_on", "step names")
		for i, d := range deps {
			if d.kind != kindString {
				c.r.add(d.line, d.col, dp.at(i), "must be a step name, got %s", d.describe())
				continue
			}
			s.dependsOn = append(s.dependsOn, some(d.value.(string), locOf(d, dp.at(i))))
		}
	}
	s.description = o.str("description")
	s.handler = o.str("handler")
	if s.handler.set && strings.TrimSpace(s.handler.v) == "" {
		c.r.addAt(s.handler.at, "must not be empty")
		s.handler.set = false
	}
	s.config = o.json("config")
	s.retryable = o.boolean("retryable")
	s.timeout = o.duration("timeout", MaxTimeout)
	if n, p := o.value("retry"); n != nil {
		s.retry = c.retry(n, p)
	}
	return s
}

func (c *checker) event(n *node, p *path) eventSpec {
	o := c.object(n, p, "an event", eventKeys())
	o.require("name")
	return eventSpec{
		at:          locOf(n, p),
		name:        o.str("name"),
		description: o.str("description"),
		schema:      o.json("schema"),
	}
}

func (c *checker) environments(t *templateSpec, n *node, p *path) {
	if n.kind != kindMap {
		c.r.add(n.line, n.col, p, "environments must be a mapping of environment names, got %s", n.describe())
		return
	}
	t.envs = map[string]*envSpec{}
	for _, e := range n.entries {
		if e.badKey != "" {
			c.r.add(e.line, e.col, p.child(e.badKey), "key %s must be a string", e.badKey)
			continue
		}
		ep := p.child(e.key)
		if !nameRE.MatchString(e.key) {
			c.r.add(e.line, e.col, ep, "invalid environment name %q: use 1 to 64 lowercase letters, digits, \"_\" or \"-\", starting with a letter", e.key)
		}
		env := &envSpec{at: loc{line: e.line, col: e.col, path: ep}}
		t.envs[e.key] = env
		t.envNames = append(t.envNames, e.key)
		if e.value.isNull() {
			continue
		}
		o := c.object(e.value, ep, "an environment", environmentKeys())
		if dn, dp := o.value("defaults"); dn != nil {
			env.defaults = c.defaults(dn, dp)
		}
		items, sp := o.list("steps", "step overrides")
		for i, item := range items {
			env.steps = append(env.steps, c.step(item, sp.at(i), true))
		}
	}
}

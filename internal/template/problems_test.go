package template

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// knownHandlers accepts the handlers the invalid testdata files use.
func knownHandlers(name string) bool { return name == "command" || name == "http" }

// problemsOf returns the problems of err, failing the test when err is not
// a *ValidationError.
func problemsOf(t *testing.T, err error) []Problem {
	t.Helper()
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error = %v (%T), want *ValidationError", err, err)
	}
	return ve.Problems
}

// p builds an expected problem; columns are checked by TestProblemColumns.
func p(file string, line int, step, path, msg string) Problem {
	return Problem{File: file, Line: line, Step: step, Path: path, Message: msg}
}

const badName = `use 1 to 64 lowercase letters, digits, "_" or "-", starting with a letter`

func TestProblems(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file string
		env  string
		want []Problem
	}{
		{
			file: "malformed.yaml",
			want: []Problem{p("malformed.yaml", 8, "", "", "invalid YAML: ',' or ']' must be specified")},
		},
		{
			file: "duplicate_key.yaml",
			want: []Problem{p("duplicate_key.yaml", 7, "", "", `invalid YAML: mapping key "handler" already defined at [6:5]`)},
		},
		{
			file: "not_a_mapping.yaml",
			want: []Problem{p("not_a_mapping.yaml", 1, "", "", "a template must be a mapping, got list")},
		},
		{
			file: "empty.yaml",
			want: []Problem{p("empty.yaml", 1, "", "", "empty template")},
		},
		{
			file: "two_documents.yaml",
			want: []Problem{p("two_documents.yaml", 8, "", "", "a template file holds exactly one YAML document, found 2")},
		},
		{
			file: "unknown_keys.yaml",
			want: []Problem{
				p("unknown_keys.yaml", 2, "", "namspace", `unknown key "namspace" (did you mean "namespace"?)`),
				p("unknown_keys.yaml", 7, "", "defaults.retry.limits", `unknown key "limits" (did you mean "limit"?)`),
				p("unknown_keys.yaml", 9, "", "defaults.retry.backoff.factor", `unknown key "factor"`),
				p("unknown_keys.yaml", 15, "b", "steps[1].depend_on", `unknown key "depend_on" (did you mean "depends_on"?)`),
				p("unknown_keys.yaml", 16, "b", "steps[1].colour", `unknown key "colour"`),
				p("unknown_keys.yaml", 19, "", "environments.production.default", `unknown key "default" (did you mean "defaults"?)`),
				p("unknown_keys.yaml", 22, "b", "environments.production.steps[0].depends_on", "depends_on cannot be overridden per environment"),
			},
		},
		{
			file: "missing_required.yaml",
			want: []Problem{
				p("missing_required.yaml", 1, "", "", `missing required key "version"`),
				p("missing_required.yaml", 4, "", "events[0]", `missing required key "name"`),
				p("missing_required.yaml", 6, "a", "steps[0]", `missing required key "handler"`),
				p("missing_required.yaml", 7, "", "steps[1]", `missing required key "name"`),
				p("missing_required.yaml", 9, "c", "steps[2].handler", "missing value"),
			},
		},
		{
			file: "no_steps.yaml",
			want: []Problem{p("no_steps.yaml", 4, "", "steps", "a template needs at least one step")},
		},
		{
			file: "names.yaml",
			want: []Problem{
				p("names.yaml", 1, "", "namespace", `invalid name "Ecommerce": `+badName),
				p("names.yaml", 2, "", "name", `invalid name "process order": `+badName),
				p("names.yaml", 5, "Validate", "steps[0].name", `invalid name "Validate": `+badName),
				p("names.yaml", 9, "ok", "steps[2].name", `duplicate step name "ok", already used by steps[1]`),
				p("names.yaml", 11, "9lives", "steps[3].name", `invalid name "9lives": `+badName),
				p("names.yaml", 13, "a_very_long_step_name_that_goes_on_and_on_and_on_past_the_sixty_four_limit", "steps[4].name",
					`invalid name "a_very_long_step_name_that_goes_on_and_on_and_on_past_the_sixty_four_limit": `+badName),
				p("names.yaml", 15, "", "steps[5].name", "must be a string, got integer 42"),
			},
		},
		{
			file: "header.yaml",
			want: []Problem{
				p("header.yaml", 3, "", "version", `"v1.2.3" is not a semantic version: drop the leading "v"`),
				p("header.yaml", 4, "", "description", "must be a string, got list"),
				p("header.yaml", 5, "", "identity_strategy", `unknown identity strategy "unique": use always_unique, hash or idempotency_key`),
				p("header.yaml", 6, "", "concurrency", "must be between 0 and 10000, got 10001"),
			},
		},
		{
			file: "dependencies.yaml",
			want: []Problem{
				p("dependencies.yaml", 9, "b", "steps[1].depends_on[1]", `unknown step "missing"`),
				p("dependencies.yaml", 9, "b", "steps[1].depends_on[2]", "a step cannot depend on itself"),
				p("dependencies.yaml", 9, "b", "steps[1].depends_on[3]", `"a" is listed twice in depends_on`),
				p("dependencies.yaml", 12, "c", "steps[2].depends_on[0]", `unknown step "vaildate" (did you mean "validate"?)`),
				p("dependencies.yaml", 15, "validate", "steps[3].depends_on[0]", "must be a step name, got integer 7"),
				p("dependencies.yaml", 18, "e", "steps[4].depends_on", "must be a list of step names, got string \"a\""),
			},
		},
		{
			file: "cycles.yaml",
			want: []Problem{
				p("cycles.yaml", 9, "a", "steps[1].depends_on[1]", "dependency cycle: a -> b -> c -> a"),
				p("cycles.yaml", 18, "d", "steps[4].depends_on[0]", "dependency cycle: d -> e -> d"),
			},
		},
		{
			file: "handlers.yaml",
			want: []Problem{
				p("handlers.yaml", 8, "b", "steps[1].handler", `unknown handler "comand"`),
				p("handlers.yaml", 10, "c", "steps[2].handler", "must not be empty"),
			},
		},
		{
			file: "handlers.yaml",
			env:  "test",
			want: []Problem{
				p("handlers.yaml", 8, "b", "steps[1].handler", `unknown handler "comand"`),
				p("handlers.yaml", 10, "c", "steps[2].handler", "must not be empty"),
				p("handlers.yaml", 17, "d", "environments.test.steps[0].handler", `unknown handler "mock"`),
			},
		},
		{
			file: "durations.yaml",
			want: []Problem{
				p("durations.yaml", 5, "", "defaults.timeout", `invalid duration "10 seconds": use a Go duration such as "30s", "1m30s" or "500ms"`),
				p("durations.yaml", 9, "a", "steps[0].timeout", `must be greater than 0, got "-1s"`),
				p("durations.yaml", 12, "b", "steps[1].timeout", `must be greater than 0, got "0s"`),
				p("durations.yaml", 15, "c", "steps[2].timeout", `must be at most 24h, got "25h"`),
				p("durations.yaml", 18, "d", "steps[3].timeout", `must be a duration string such as "30s", got integer 30`),
				p("durations.yaml", 23, "e", "steps[4].retry.backoff.initial", `must be greater than 0, got "0s"`),
				p("durations.yaml", 24, "e", "steps[4].retry.backoff.max", `must be at most 24h, got "48h"`),
			},
		},
		{
			file: "ranges.yaml",
			want: []Problem{
				p("ranges.yaml", 4, "", "concurrency", "must be between 0 and 10000, got -1"),
				p("ranges.yaml", 6, "", "defaults.retryable", `must be true or false, got string "yes"`),
				p("ranges.yaml", 8, "", "defaults.retry.limit", "must be between 1 and 100, got 0"),
				p("ranges.yaml", 10, "", "defaults.retry.backoff.multiplier", "must be between 1 and 10, got 0.5"),
				p("ranges.yaml", 11, "", "defaults.retry.backoff.jitter", "must be between 0 and 1, got 1.5"),
				p("ranges.yaml", 16, "a", "steps[0].retry.limit", "must be between 1 and 100, got 101"),
				p("ranges.yaml", 17, "a", "steps[0].retry.backoff.multiplier", "must be between 1 and 10, got 11"),
				p("ranges.yaml", 17, "a", "steps[0].retry.backoff.jitter", "must be between 0 and 1, got -0.1"),
				p("ranges.yaml", 21, "b", "steps[1].retry.limit", "must be an integer, got number 2.5"),
				p("ranges.yaml", 22, "b", "steps[1].retry.backoff.multiplier", `must be a number, got string "fast"`),
				p("ranges.yaml", 26, "c", "steps[2].retry.backoff.initial", "backoff initial 10m is greater than backoff max 5m"),
				p("ranges.yaml", 30, "d", "steps[3].retry.backoff.initial", "backoff initial 10m is greater than backoff max 5m"),
				p("ranges.yaml", 34, "e", "steps[4].retry.backoff.max", "backoff initial 1s is greater than backoff max 100ms"),
			},
		},
		{
			file: "backoff_defaults.yaml",
			want: []Problem{
				// Reported once for the defaults, not once per step.
				p("backoff_defaults.yaml", 7, "", "defaults.retry.backoff.initial", "backoff initial 10m is greater than backoff max 5m"),
				p("backoff_defaults.yaml", 15, "c", "steps[2].retry.backoff.max", "backoff initial 10m is greater than backoff max 1m"),
			},
		},
		{
			file: "schemas.yaml",
			want: []Problem{
				p("schemas.yaml", 8, "", "context_schema.properties.order_id.type",
					"invalid JSON Schema: value must be one of 'array', 'boolean', 'integer', 'null', 'number', 'object', 'string'"),
				p("schemas.yaml", 12, "", "events[0].schema.minimum", "invalid JSON Schema: expected number, but got string"),
				p("schemas.yaml", 15, "", "events[1].schema",
					`invalid JSON Schema: failing loading "https://example.com/order.json": schemas must be self-contained (no $ref to files or URLs)`),
			},
		},
		{
			file: "events.yaml",
			want: []Problem{
				p("events.yaml", 5, "", "events[0].name", `event name "Order.Placed" must be dot-separated lowercase words such as "order.placed"`),
				p("events.yaml", 6, "", "events[1].name", `event name "task.started" uses the reserved namespace "task"`),
				p("events.yaml", 8, "", "events[3].name", `duplicate event "order.placed", already declared by events[2]`),
				p("events.yaml", 9, "", "events[4].name", `event name "placed" must be dot-separated lowercase words such as "order.placed"`),
			},
		},
		{
			file: "overrides.yaml",
			want: []Problem{
				p("overrides.yaml", 10, "b", "environments.production.steps[0].name", `unknown step "b"`),
				p("overrides.yaml", 14, "a", "environments.production.steps[2].name", `step "a" is overridden twice in environment "production"`),
				p("overrides.yaml", 16, "", "environments.Staging", `invalid environment name "Staging": `+badName),
				p("overrides.yaml", 18, "", "environments.Staging.defaults.timeout", `invalid duration "forever": use a Go duration such as "30s", "1m30s" or "500ms"`),
			},
		},
		{
			file: "overrides.yaml",
			env:  "staging",
			want: []Problem{
				p("overrides.yaml", 7, "", "environments", `unknown environment "staging" (defined: production, Staging)`),
				p("overrides.yaml", 10, "b", "environments.production.steps[0].name", `unknown step "b"`),
				p("overrides.yaml", 14, "a", "environments.production.steps[2].name", `step "a" is overridden twice in environment "production"`),
				p("overrides.yaml", 16, "", "environments.Staging", `invalid environment name "Staging": `+badName),
				p("overrides.yaml", 18, "", "environments.Staging.defaults.timeout", `invalid duration "forever": use a Go duration such as "30s", "1m30s" or "500ms"`),
			},
		},
		{
			file: "config_keys.yaml",
			want: []Problem{
				p("config_keys.yaml", 7, "", "context_schema.properties.1", "key 1 must be a string (quote it)"),
				p("config_keys.yaml", 13, "a", "steps[0].config.codes.200", "key 200 must be a string (quote it)"),
				p("config_keys.yaml", 14, "a", "steps[0].config.codes.true", "key true must be a string (quote it)"),
				p("config_keys.yaml", 15, "a", "steps[0].config.ratio", "NaN cannot be represented in JSON"),
			},
		},
		{
			file: "yaml_features.yaml",
			want: []Problem{
				p("yaml_features.yaml", 8, "a", "steps[0].config.x", `unknown alias "nowhere"`),
				p("yaml_features.yaml", 9, "a", "steps[0].config.y", "unsupported YAML tag !custom"),
				p("yaml_features.yaml", 10, "a", "steps[0].config.z", "tag !!int does not match the value, a string"),
				p("yaml_features.yaml", 12, "b", "steps[1].timeout", "must be a duration string such as \"30s\", got mapping"),
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.file+"/"+tc.env, func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(filepath.Join("testdata", "invalid", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			tpl, err := Parse(tc.file, data, ParseOptions{Environment: tc.env, KnownHandler: knownHandlers})
			if tpl != nil {
				t.Errorf("Parse returned a template along with error %v", err)
			}
			got := problemsOf(t, err)
			if diff := cmp.Diff(tc.want, got, cmpopts.IgnoreFields(Problem{}, "Column")); diff != "" {
				t.Errorf("problems mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestProblemColumns(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("testdata/invalid/dependencies.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Parse("dependencies.yaml", data, ParseOptions{})
	type pos struct{ Line, Column int }
	var got []pos
	for _, pr := range problemsOf(t, err) {
		got = append(got, pos{pr.Line, pr.Column})
	}
	// depends_on: [a, missing, b, a] on line 9; "missing" is at column 21.
	want := []pos{{9, 21}, {9, 30}, {9, 33}, {12, 18}, {15, 18}, {18, 17}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("positions mismatch (-want +got):\n%s", diff)
	}
}

func TestValidationErrorFormat(t *testing.T) {
	t.Parallel()
	err := &ValidationError{Problems: []Problem{
		{File: "t.yaml", Line: 3, Column: 5, Step: "charge", Path: "steps[2].timeout", Message: "must be greater than 0"},
		{File: "t.yaml", Line: 1, Path: "version", Message: "not semver"},
		{File: "t.yaml", Message: "empty template"},
		{Path: "steps[0].handler", Step: "a", Message: "unknown handler \"x\""},
	}}
	want := strings.Join([]string{
		`t.yaml:3: step "charge": steps[2].timeout: must be greater than 0`,
		`t.yaml:1: version: not semver`,
		`t.yaml: empty template`,
		`step "a": steps[0].handler: unknown handler "x"`,
	}, "\n")
	if got := err.Error(); got != want {
		t.Errorf("Error() =\n%s\nwant\n%s", got, want)
	}
}

func TestTooManySteps(t *testing.T) {
	t.Parallel()
	for _, n := range []int{MaxSteps, MaxSteps + 1} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			t.Parallel()
			tpl, err := Parse("big.yaml", chain(n), ParseOptions{})
			if n <= MaxSteps {
				if err != nil {
					t.Fatalf("Parse(%d steps): %v", n, err)
				}
				if got := tpl.Steps[n-1].Level; got != n-1 {
					t.Errorf("level of the last step = %d, want %d", got, n-1)
				}
				return
			}
			want := []Problem{p("big.yaml", 5, "", "steps", "too many steps: 10001, at most 10000")}
			if diff := cmp.Diff(want, problemsOf(t, err), cmpopts.IgnoreFields(Problem{}, "Column")); diff != "" {
				t.Errorf("problems mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// chain returns a template of n steps, each depending on the previous one
// and carrying a small config.
func chain(n int) []byte {
	var b strings.Builder
	b.WriteString("namespace: big\nname: chain\nversion: 1.0.0\nsteps:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - name: s%d\n    handler: command\n    config: {i: %d}\n", i, i)
		if i > 0 {
			fmt.Fprintf(&b, "    depends_on: [s%d]\n", i-1)
		}
	}
	return []byte(b.String())
}

func TestManyCyclesAreCapped(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString(header + "steps:\n")
	for i := range 30 { // 15 two-step cycles
		fmt.Fprintf(&b, "  - {name: s%d, handler: h, depends_on: [s%d]}\n", i, i^1)
	}
	_, err := Parse("t.yaml", []byte(b.String()), ParseOptions{})
	problems := problemsOf(t, err)
	if len(problems) != maxCycles {
		t.Fatalf("got %d problems, want %d:\n%v", len(problems), maxCycles, err)
	}
	if want := "dependency cycle: s0 -> s1 -> s0"; problems[0].Message != want {
		t.Errorf("first problem = %q, want %q", problems[0].Message, want)
	}
}

func TestVersions(t *testing.T) {
	t.Parallel()
	notSemver := `is not a semantic version: use MAJOR.MINOR.PATCH such as "1.0.0" (semver.org)`
	tests := []struct {
		version string
		want    string // "" = valid
	}{
		{"1.0.0", ""},
		{"0.0.1", ""},
		{"10.20.30", ""},
		{"1.0.0-rc.1+build.5", ""},
		{"1.0.0-alpha-a.b-c", ""},
		{`"2.0.0"`, ""},
		{"v1.0.0", `"v1.0.0" is not a semantic version: drop the leading "v"`},
		{"1.0", `1.0 is not a semantic version: use MAJOR.MINOR.PATCH such as "1.0.0" (quote it)`},
		{"1", `1 is not a semantic version: use MAJOR.MINOR.PATCH such as "1.0.0" (quote it)`},
		{"01.0.0", `"01.0.0" ` + notSemver},
		{"1.0.0-", `"1.0.0-" ` + notSemver},
		{"1.0.0-01", `"1.0.0-01" ` + notSemver},
		{"latest", `"latest" ` + notSemver},
	}
	for _, tc := range tests {
		t.Run(tc.version, func(t *testing.T) {
			t.Parallel()
			src := "namespace: ns\nname: n\nversion: " + tc.version + "\nsteps: [{name: a, handler: h}]\n"
			_, err := Parse("v.yaml", []byte(src), ParseOptions{})
			if tc.want == "" {
				if err != nil {
					t.Errorf("Parse: %v", err)
				}
				return
			}
			want := []Problem{{File: "v.yaml", Line: 3, Column: 10, Path: "version", Message: tc.want}}
			if diff := cmp.Diff(want, problemsOf(t, err)); diff != "" {
				t.Errorf("problems mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestStructureProblems(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		src  string // appended to header
		opts ParseOptions
		want []Problem
	}{
		{
			name: "steps not a list",
			src:  "steps: a\n",
			want: []Problem{{Line: 4, Path: "steps", Message: `must be a list of steps, got string "a"`}},
		},
		{
			name: "step not a mapping",
			src:  "steps: [a]\n",
			want: []Problem{{Line: 4, Path: "steps[0]", Message: `a step must be a mapping, got string "a"`}},
		},
		{
			name: "environments not a mapping",
			src:  "steps: [{name: a, handler: h}]\nenvironments: [prod]\n",
			want: []Problem{{Line: 5, Path: "environments", Message: "environments must be a mapping of environment names, got list"}},
		},
		{
			name: "unknown environment without environments",
			src:  "steps: [{name: a, handler: h}]\n",
			opts: ParseOptions{Environment: "prod"},
			want: []Problem{{Path: "environments", Message: `unknown environment "prod" (defined: none)`}},
		},
		{
			name: "override without a name",
			src:  "steps: [{name: a, handler: h}]\nenvironments:\n  prod:\n    steps: [{timeout: 1s}]\n",
			want: []Problem{{Line: 7, Path: "environments.prod.steps[0]", Message: `missing required key "name"`}},
		},
		{
			name: "bad merge key",
			src:  "steps:\n  - {<<: [1], name: a, handler: h}\n",
			want: []Problem{{Line: 5, Path: `steps[0]["<<"]`, Step: "a", Message: "a merge key (<<) takes a mapping or a list of mappings, got integer 1"}},
		},
		{
			name: "alias bomb",
			src: `x0: &x0 [a, a, a, a, a, a, a, a, a, a]
x1: &x1 [*x0, *x0, *x0, *x0, *x0, *x0, *x0, *x0, *x0, *x0]
x2: &x2 [*x1, *x1, *x1, *x1, *x1, *x1, *x1, *x1, *x1, *x1]
x3: &x3 [*x2, *x2, *x2, *x2, *x2, *x2, *x2, *x2, *x2, *x2]
x4: &x4 [*x3, *x3, *x3, *x3, *x3, *x3, *x3, *x3, *x3, *x3]
x5: &x5 [*x4, *x4, *x4, *x4, *x4, *x4, *x4, *x4, *x4, *x4]
x6: &x6 [*x5, *x5, *x5, *x5, *x5, *x5, *x5, *x5, *x5, *x5]
steps: [{name: a, handler: h, config: *x6}]
`,
			want: []Problem{{Line: 1, Message: "the document expands to more than 1000000 values through aliases"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse("", []byte(header+tc.src), tc.opts)
			if diff := cmp.Diff(tc.want, problemsOf(t, err), cmpopts.IgnoreFields(Problem{}, "Column")); diff != "" {
				t.Errorf("problems mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

package template

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", path, diff)
	}
}

func TestMarshalJSONGolden(t *testing.T) {
	t.Parallel()
	tpl := mustParseFile(t, "testdata/order.yaml", ParseOptions{})
	b, err := json.Marshal(tpl)
	if err != nil {
		t.Fatal(err)
	}
	var indented bytes.Buffer
	if err := json.Indent(&indented, b, "", "  "); err != nil {
		t.Fatal(err)
	}
	indented.WriteByte('\n')
	golden(t, "order.json", indented.Bytes())

	direct, err := tpl.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(direct, b) {
		t.Errorf("MarshalJSON and json.Marshal differ:\n%s\n%s", direct, b)
	}
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		tpl  *Template
	}{
		{"order", mustParseFile(t, "testdata/order.yaml", ParseOptions{})},
		{"order in production", mustParseFile(t, "testdata/order.yaml", ParseOptions{Environment: "production"})},
		{"minimal", mustParse(t, header+"steps:\n  - {name: a, handler: h}\n", ParseOptions{})},
		{"special characters", mustParse(t, header+`description: "<b>&\"quotes\"</b>"
steps:
  - name: a
    handler: h
    config: {cmd: "echo a > b && echo 'ü'", big: 18446744073709551615, small: 1.0e-7, neg: -3}
    retry: {backoff: {jitter: 0.333333333333, multiplier: 1.5}}
`, ParseOptions{})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, err := tc.tpl.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			back, err := FromJSON(b)
			if err != nil {
				t.Fatalf("FromJSON: %v\n%s", err, b)
			}
			if diff := cmp.Diff(tc.tpl, back, ignoreUnexported, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("round trip mismatch (-want +got):\n%s", diff)
			}
			again, err := back.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, again) {
				t.Errorf("MarshalJSON not stable across FromJSON:\n%s\n%s", b, again)
			}
			if tc.tpl.Digest() != back.Digest() {
				t.Errorf("Digest changed across FromJSON")
			}
			if diff := cmp.Diff(tc.tpl.Graph().Levels(), back.Graph().Levels()); diff != "" {
				t.Errorf("graph levels mismatch (-want +got):\n%s", diff)
			}
			if (tc.tpl.ContextSchema == nil) != (back.contextSchema == nil) {
				t.Errorf("context schema not recompiled")
			}
		})
	}
}

func TestRoundTripLarge(t *testing.T) {
	t.Parallel()
	tpl, err := Parse("big.yaml", chain(MaxSteps), ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := tpl.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	back, err := FromJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	if tpl.Digest() != back.Digest() {
		t.Errorf("Digest changed across FromJSON")
	}
}

func TestDigest(t *testing.T) {
	t.Parallel()
	order := mustParseFile(t, "testdata/order.yaml", ParseOptions{})
	reformatted := mustParseFile(t, "testdata/order_reformatted.yaml", ParseOptions{})
	if a, b := order.Digest(), reformatted.Digest(); a != b {
		t.Errorf("Digest differs for the same content formatted differently: %s vs %s", a, b)
	}
	if got := len(order.Digest()); got != 64 {
		t.Errorf("len(Digest()) = %d, want 64 hex characters", got)
	}
	if again := mustParseFile(t, "testdata/order.yaml", ParseOptions{}); again.Digest() != order.Digest() {
		t.Errorf("Digest is not stable across parses")
	}
	production := mustParseFile(t, "testdata/order.yaml", ParseOptions{Environment: "production"})
	if order.Digest() == production.Digest() {
		t.Errorf("Digest ignores the environment's overrides")
	}
	data, err := os.ReadFile("testdata/order.yaml")
	if err != nil {
		t.Fatal(err)
	}
	changed, err := Parse("order.yaml", bytes.Replace(data, []byte("timeout: 10s"), []byte("timeout: 11s"), 1), ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if order.Digest() == changed.Digest() {
		t.Errorf("Digest ignores a changed timeout")
	}
}

func TestFromJSONErrors(t *testing.T) {
	t.Parallel()
	if _, err := FromJSON([]byte(`{"namespace": `)); err == nil || !strings.HasPrefix(err.Error(), "decode template JSON: ") {
		t.Errorf("FromJSON(truncated) = %v, want a decode error", err)
	}
	_, err := FromJSON([]byte(`{"namespace":"ns","name":"n","version":"1.0","identity":"hash",
		"steps":[{"name":"a","handler":"h","timeout":"0s"},{"name":"b","handler":"h","depends_on":["a","c"]}]}`))
	want := []Problem{
		{Path: "identity", Message: `unknown key "identity"`},
		{Path: "version", Message: `"1.0" is not a semantic version: use MAJOR.MINOR.PATCH such as "1.0.0" (semver.org)`},
		{Path: "steps[0].timeout", Step: "a", Message: `must be greater than 0, got "0s"`},
		{Path: "steps[1].depends_on[1]", Step: "b", Message: `unknown step "c"`},
	}
	if diff := cmp.Diff(want, problemsOf(t, err)); diff != "" {
		t.Errorf("problems mismatch (-want +got):\n%s", diff)
	}
}

func TestMermaidGolden(t *testing.T) {
	t.Parallel()
	tpl := mustParseFile(t, "testdata/order.yaml", ParseOptions{})
	golden(t, "order.mermaid", []byte(tpl.Mermaid()))
}

func TestMermaidEscapesAndKeywords(t *testing.T) {
	t.Parallel()
	tpl := mustParse(t, header+`steps:
  - {name: start, handler: "a\"b<c>"}
  - {name: end, handler: h, depends_on: [start]}
  - {name: after, handler: h, depends_on: [end]}
`, ParseOptions{})
	want := `flowchart TD
    start["start<br/>a#quot;b#lt;c#gt;"]
    End["end<br/>h"]
    after["after<br/>h"]
    start --> End
    End --> after
`
	if diff := cmp.Diff(want, tpl.Mermaid()); diff != "" {
		t.Errorf("Mermaid mismatch (-want +got):\n%s", diff)
	}
}

func TestLevelsText(t *testing.T) {
	t.Parallel()
	tpl := mustParseFile(t, "testdata/order.yaml", ParseOptions{})
	want := "level 0: validate_cart\nlevel 1: reserve_stock, charge_card\nlevel 2: ship\n"
	if got := tpl.LevelsText(); got != want {
		t.Errorf("LevelsText() = %q, want %q", got, want)
	}
	disconnected := mustParse(t, header+`steps:
  - {name: z, handler: h, depends_on: [y]}
  - {name: y, handler: h}
  - {name: x, handler: h}
`, ParseOptions{})
	if got, want := disconnected.LevelsText(), "level 0: y, x\nlevel 1: z\n"; got != want {
		t.Errorf("LevelsText() = %q, want %q", got, want)
	}
}

package secret

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestResolve(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "db-password"), []byte("s3cr3t-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"API_TOKEN": "tok-12345", "OTHER": "nope-value"}
	p := &Policy{EnvPatterns: []string{"API_*"}, Dirs: []string{dir},
		LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }}
	raw := json.RawMessage(`{"headers":{"Authorization":"Bearer ${env:API_TOKEN}"},"dsn":"postgres://u:${file:` + dir + `/db-password}@db","n":3,"list":["${env:API_TOKEN}","plain"]}`)
	out, values, err := p.Resolve(raw)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if got["headers"].(map[string]any)["Authorization"] != "Bearer tok-12345" || got["dsn"] != "postgres://u:s3cr3t-file@db" ||
		got["list"].([]any)[0] != "tok-12345" || got["n"].(float64) != 3 {
		t.Fatalf("resolved = %s", out)
	}
	if len(values) != 3 {
		t.Fatalf("values = %v", values)
	}
	for _, tc := range []struct {
		raw  string
		want string
	}{
		{`"${env:OTHER}"`, "not allowed"},
		{`"${env:API_MISSING}"`, "not set"},
		{`"${file:/etc/passwd}"`, "not allowed"},
		{`"${file:` + dir + `/../escape}"`, "not allowed"},
		{`"${file:` + dir + `/absent}"`, "cannot be read"},
		{`"${vault:x}"`, ""}, // not a reference: left alone
	} {
		out, _, err := p.Resolve(json.RawMessage(tc.raw))
		if tc.want == "" {
			if err != nil || string(out) != tc.raw {
				t.Errorf("%s: %s, %v; want unchanged", tc.raw, out, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.raw, err, tc.want)
		}
		if err != nil && (strings.Contains(err.Error(), "nope-value") || strings.Contains(err.Error(), "root:")) {
			t.Errorf("%s: the error leaks a value: %v", tc.raw, err)
		}
	}
	if _, _, err := (&Policy{}).Resolve(json.RawMessage(`"${env:API_TOKEN}"`)); !errors.Is(err, ErrNotAllowed) {
		t.Errorf("empty policy: err = %v, want ErrNotAllowed", err)
	}
	if out, vals, err := (&Policy{}).Resolve(json.RawMessage(`{"a":1}`)); err != nil || string(out) != `{"a":1}` || vals != nil {
		t.Errorf("no references: %s %v %v", out, vals, err)
	}
}

func TestRedactor(t *testing.T) {
	t.Parallel()
	r := NewRedactor([]string{`pa"ss\word`, "tok-12345", "ab"})
	if got := r.String("Bearer tok-12345 failed"); got != "Bearer [REDACTED] failed" {
		t.Errorf("String = %q", got)
	}
	// The JSON-escaped form of a value is redacted too, and JSON stays valid.
	doc, _ := json.Marshal(map[string]string{"echo": `pa"ss\word`, "short": "ab"})
	red := r.Bytes(doc)
	if bytes.Contains(red, []byte("word")) || !json.Valid(red) || !bytes.Contains(red, []byte(`"ab"`)) {
		t.Errorf("Bytes = %s", red)
	}
	// So is its URL-escaped form, as in a query string.
	u := NewRedactor([]string{"s3cr3t/+&key"})
	if got := u.String("GET /pay?key=s3cr3t%2F%2B%26key and /s3cr3t%2F+&key"); strings.Contains(got, "s3cr3t") {
		t.Errorf("URL forms not redacted: %q", got)
	}
	var nilR *Redactor
	if nilR.String("x") != "x" || NewRedactor(nil) != nil {
		t.Error("a nil redactor must pass text through")
	}
	var logs bytes.Buffer
	log := slog.New(r.Handler(slog.NewJSONHandler(&logs, nil))).With(slog.String("header", "Bearer tok-12345"))
	log.Info("calling with tok-12345", slog.Any("error", errors.New("401 for tok-12345")), slog.Group("g", slog.String("k", "tok-12345")))
	if strings.Contains(logs.String(), "tok-12345") || strings.Count(logs.String(), Mask) != 4 {
		t.Errorf("logs = %s", logs.String())
	}
}

package builtin

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tasker-go/tasker/internal/handler"
)

func TestNamesAndHandlers(t *testing.T) {
	t.Parallel()
	want := []string{"command", "http", "noop", "sleep"}
	if got := Names(); !slices.Equal(got, want) {
		t.Errorf("Names() = %v, want %v", got, want)
	}
	all := Handlers(Options{})
	for _, name := range want {
		if all[name] == nil {
			t.Errorf("Handlers(Options{})[%q] = nil, want a handler", name)
		}
	}
	if len(all) != len(want) {
		t.Errorf("len(Handlers(Options{})) = %d, want %d", len(all), len(want))
	}
	safe := Handlers(Options{DisableCommand: true})
	if _, ok := safe["command"]; ok {
		t.Error(`Handlers(Options{DisableCommand: true}) has "command", want it left out`)
	}
	if safe["noop"] == nil || safe["sleep"] == nil {
		t.Errorf("Handlers(Options{DisableCommand: true}) = %v, want noop and sleep", safe)
	}
}

func TestNoop(t *testing.T) {
	t.Parallel()
	tests := []struct {
		config string
		want   string // JSON of the result; "" for nil
	}{
		{config: ``, want: ""},
		{config: `null`, want: ""},
		{config: `{}`, want: ""},
		{config: `{"result": {"ok": true}}`, want: `{"ok": true}`},
		{config: `{"result": [1, 2]}`, want: `[1, 2]`},
		{config: `{"result": null}`, want: `null`},
	}
	for _, tc := range tests {
		got, err := NewNoop().Handle(context.Background(), &handler.Input{Config: json.RawMessage(tc.config)})
		if err != nil {
			t.Errorf("noop(%s): error %v, want nil", tc.config, err)
			continue
		}
		if gotJSON := resultJSON(t, got); gotJSON != tc.want {
			t.Errorf("noop(%s) = %s, want %s", tc.config, gotJSON, tc.want)
		}
	}
}

func TestSleep(t *testing.T) {
	t.Parallel()
	start := time.Now()
	got, err := NewSleep().Handle(context.Background(), &handler.Input{
		Config: json.RawMessage(`{"duration": "50ms", "result": "done"}`),
	})
	if err != nil {
		t.Fatalf("sleep: error %v, want nil", err)
	}
	if elapsed := time.Since(start); elapsed < 50*time.Millisecond {
		t.Errorf("sleep returned after %v, want at least 50ms", elapsed)
	}
	if gotJSON := resultJSON(t, got); gotJSON != `"done"` {
		t.Errorf("sleep result = %s, want %q", gotJSON, `"done"`)
	}

	got, err = NewSleep().Handle(context.Background(), &handler.Input{Config: json.RawMessage(`{"duration": "0s"}`)})
	if err != nil || got != nil {
		t.Errorf("sleep 0s = %v, %v; want nil, nil", got, err)
	}
}

func TestSleepCancelled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := NewSleep().Handle(ctx, &handler.Input{Config: json.RawMessage(`{"duration": "1h"}`)})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("sleep past its deadline: error %v, want one wrapping context.DeadlineExceeded", err)
	}
	if c := handler.Classify(err); c.Permanent {
		t.Errorf("Classify(%v).Permanent = true, want a retryable error", err)
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("sleep returned %v after cancellation, want promptly", elapsed)
	}
}

func TestBadConfigs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		handler string
		config  string
		want    string // substring of the error message
	}{
		{"noop", `{"results": 1}`, `unknown field "results"`},
		{"noop", `[1]`, "must be a JSON object, got array"},
		{"noop", `{"result": 1} {}`, "unexpected data"},
		{"sleep", ``, `field "duration" is required`},
		{"sleep", `{}`, `field "duration" is required`},
		{"sleep", `{"duration": 5}`, `field "duration": got JSON number, want string`},
		{"sleep", `{"duration": "soon"}`, `field "duration": "soon" is not`},
		{"sleep", `{"duration": "-1s"}`, `field "duration": "-1s" is not`},
		{"sleep", `{"duration": "1s", "extra": true}`, `unknown field "extra"`},
		{"command", ``, `field "command" is required`},
		{"command", `null`, `field "command" is required`},
		{"command", `{}`, `field "command" is required`},
		{"command", `{"command": []}`, `field "command" is required`},
		{"command", `{"command": null}`, `field "command" is required`},
		{"command", `{"command": "ls -l"}`, `field "command": got JSON string, want array of strings`},
		{"command", `{"command": ["ls", 1]}`, `field "command": got JSON number, want string`},
		{"command", `{"command": [""]}`, `field "command": the program name`},
		{"command", `{"command": ["ls", "a\u0000b"]}`, `field "command": element 1 contains a NUL byte`},
		{"command", `{"command": ["ls"], "env": ["A=1"]}`, `field "env": got JSON array, want object of strings`},
		{"command", `{"command": ["ls"], "env": {"A": 1}}`, `field "env": got JSON number, want string`},
		{"command", `{"command": ["ls"], "env": {"A=B": "1"}}`, `field "env": invalid variable name "A=B"`},
		{"command", `{"command": ["ls"], "env": {"": "1"}}`, `field "env": invalid variable name ""`},
		{"command", `{"command": ["ls"], "dir": 5}`, `field "dir": got JSON number, want string`},
		{"command", `{"command": ["ls"], "shell": true}`, `unknown field "shell"`},
		{"command", `"ls"`, "must be a JSON object, got string"},
		{"command", `{"command": [`, "invalid JSON"},
	}
	hs := Handlers(Options{})
	for _, tc := range tests {
		_, err := hs[tc.handler].Handle(context.Background(), &handler.Input{Config: json.RawMessage(tc.config)})
		if err == nil {
			t.Errorf("%s(%s): error nil, want a permanent error containing %q", tc.handler, tc.config, tc.want)
			continue
		}
		if !handler.Classify(err).Permanent {
			t.Errorf("%s(%s): error %q is retryable, want permanent", tc.handler, tc.config, err)
		}
		if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), tc.handler+" config: ") {
			t.Errorf("%s(%s): error %q, want %q prefixed by %q", tc.handler, tc.config, err, tc.want, tc.handler+" config: ")
		}
	}
}

// resultJSON returns the JSON of a handler result, or "" for nil.
func resultJSON(t *testing.T, v any) string {
	t.Helper()
	if v == nil {
		return ""
	}
	raw, ok := v.(json.RawMessage)
	if !ok {
		t.Fatalf("result is %T, want json.RawMessage", v)
	}
	return string(raw)
}

// An empty config, null or {} leaves the config struct as it is, without a
// decoder; anything else is still decoded strictly.
func TestDecodeEmptyConfig(t *testing.T) {
	for _, raw := range []string{"", "  ", "null", " {} "} {
		cfg := struct {
			Result json.RawMessage `json:"result"`
			N      int             `json:"n"`
		}{N: 7}
		if err := decodeConfig("noop", json.RawMessage(raw), &cfg); err != nil || cfg.N != 7 || cfg.Result != nil {
			t.Errorf("config %q: %+v, %v; want it unchanged and no error", raw, cfg, err)
		}
	}
	var cfg struct{}
	for _, raw := range []string{`{"x":1}`, `{} {}`, `[]`} {
		if err := decodeConfig("noop", json.RawMessage(raw), &cfg); err == nil {
			t.Errorf("config %q decoded without error", raw)
		}
	}
}

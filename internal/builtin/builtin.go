package builtin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/tasker-go/tasker/internal/handler"
)

// Names of the built-in handlers, as templates refer to them.
const (
	nameCommand = "command"
	nameNoop    = "noop"
	nameSleep   = "sleep"
)

// Options configures the set of built-in handlers returned by Handlers.
type Options struct {
	// Command configures the "command" handler.
	Command CommandOptions
	// HTTP configures the "http" handler.
	HTTP HTTPOptions
	// DisableCommand leaves the "command" handler out of the set, for
	// processes that must not run programs on behalf of templates (a server
	// that accepts templates from API clients, say). Default false.
	DisableCommand bool
}

// Handlers returns a new set of the built-in handlers keyed by the name
// templates use for them: "command" (unless opts.DisableCommand is set),
// "http", "noop" and "sleep". The caller owns the returned map.
func Handlers(opts Options) map[string]handler.Handler {
	hs := map[string]handler.Handler{
		nameHTTP:  NewHTTP(opts.HTTP),
		nameNoop:  NewNoop(),
		nameSleep: NewSleep(),
	}
	if !opts.DisableCommand {
		hs[nameCommand] = NewCommand(opts.Command)
	}
	return hs
}

// Names returns the names of all built-in handlers, sorted.
func Names() []string {
	names := []string{nameCommand, nameHTTP, nameNoop, nameSleep}
	slices.Sort(names)
	return names
}

// CheckConfig validates the config of a step that uses the built-in
// handler name, when a template is registered rather than when the step
// runs: unknown or mistyped fields, missing required ones, and for "http"
// the syntax of its value templates and that the steps they read are in
// deps (the step's depends_on). It accepts any config for other handlers.
func CheckConfig(name string, config json.RawMessage, deps []string) error {
	var err error
	switch name {
	case nameHTTP:
		var cfg *httpConfig
		if cfg, err = decodeHTTPConfig(config); err == nil {
			err = checkValues(cfg.templateStrings(), deps)
		}
	case nameCommand:
		_, err = parseCommandConfig(config)
	case nameNoop:
		var cfg struct {
			Result json.RawMessage `json:"result"`
		}
		err = decodeConfig(nameNoop, config, &cfg)
	case nameSleep:
		var cfg struct {
			Duration *string         `json:"duration"`
			Result   json.RawMessage `json:"result"`
		}
		if err = decodeConfig(nameSleep, config, &cfg); err == nil {
			switch d, perr := time.ParseDuration(deref(cfg.Duration)); {
			case cfg.Duration == nil:
				err = errors.New(`sleep config: field "duration" is required`)
			case perr != nil || d < 0:
				err = fmt.Errorf(`sleep config: field "duration": %q is not a non-negative duration such as "200ms"`, *cfg.Duration)
			}
		}
	}
	if err != nil {
		// Drop the retry marker: here it is a validation problem.
		return errors.New(err.Error())
	}
	return nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// NewNoop returns the "noop" handler. It does nothing and returns its
// config's "result" field (any JSON value) as the step result, or null when
// the config has none. Config:
//
//	{"result": <any JSON>}
//
// It serves benchmarks, examples and placeholder steps.
func NewNoop() handler.Handler {
	return handler.Func(func(_ context.Context, in *handler.Input) (any, error) {
		var cfg struct {
			Result json.RawMessage `json:"result"`
		}
		if err := decodeConfig(nameNoop, in.Config, &cfg); err != nil {
			return nil, err
		}
		return result(cfg.Result), nil
	})
}

// NewSleep returns the "sleep" handler. It waits for the configured duration
// and then returns its config's "result" field (null when absent). Config:
//
//	{"duration": "200ms", "result": <any JSON>}
//
// "duration" is required and is a Go duration string ("1.5s", "2m"); it must
// not be negative. When ctx is done first, the handler returns a retryable
// error wrapping ctx.Err().
func NewSleep() handler.Handler {
	return handler.Func(func(ctx context.Context, in *handler.Input) (any, error) {
		var cfg struct {
			Duration *string         `json:"duration"`
			Result   json.RawMessage `json:"result"`
		}
		if err := decodeConfig(nameSleep, in.Config, &cfg); err != nil {
			return nil, err
		}
		if cfg.Duration == nil {
			return nil, handler.Permanent(errors.New(`sleep config: field "duration" is required`))
		}
		d, err := time.ParseDuration(*cfg.Duration)
		if err != nil || d < 0 {
			return nil, handler.Permanent(fmt.Errorf(`sleep config: field "duration": %q is not a non-negative duration such as "200ms"`, *cfg.Duration))
		}
		timer := time.NewTimer(d)
		defer timer.Stop()
		select {
		case <-timer.C:
			return result(cfg.Result), nil
		case <-ctx.Done():
			return nil, fmt.Errorf("sleep interrupted: %w", ctx.Err())
		}
	})
}

// result turns an optional raw JSON value into a handler result: nil (stored
// as null) when absent.
func result(raw json.RawMessage) any {
	if len(raw) == 0 {
		return nil
	}
	return raw
}

// decodeConfig decodes a built-in's config strictly into v: unknown keys,
// wrong types and trailing data are permanent errors naming the field. An
// absent config decodes as null, leaving v unchanged.
func decodeConfig(name string, raw json.RawMessage, v any) error {
	switch string(bytes.TrimSpace(raw)) {
	case "", "null", "{}":
		// Nothing to decode: v keeps its zero value, as decoding would
		// leave it. Most steps' configs are empty; a decoder for each of
		// their runs was most of a no-op step's allocations.
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return handler.Permanent(fmt.Errorf("%s config: %s", name, describeJSONError(err)))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return handler.Permanent(fmt.Errorf("%s config: unexpected data after the JSON object", name))
	}
	return nil
}

// describeJSONError rewrites a decoding error in terms of the config's JSON
// fields rather than Go types.
func describeJSONError(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field == "" {
			return fmt.Sprintf("must be a JSON object, got %s", te.Value)
		}
		return fmt.Sprintf("field %q: got JSON %s, want %s", te.Field, te.Value, jsonKind(te.Type))
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("invalid JSON at offset %d: %v", se.Offset, se)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return "invalid JSON: unexpected end of input"
	}
	// Unknown keys are reported as `json: unknown field "x"`.
	return strings.TrimPrefix(err.Error(), "json: ")
}

// jsonKind names the JSON type that decodes into t.
func jsonKind(t reflect.Type) string {
	if t == nil {
		return "another type"
	}
	switch t.Kind() {
	case reflect.Pointer:
		return jsonKind(t.Elem())
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Slice, reflect.Array:
		return "array of " + jsonKind(t.Elem()) + "s"
	case reflect.Map:
		return "object of " + jsonKind(t.Elem()) + "s"
	case reflect.Struct:
		return "object"
	default:
		return t.String()
	}
}

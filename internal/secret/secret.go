// Package secret resolves secret references in step configuration and
// keeps the resolved values out of everything Tasker stores or shows.
//
// A step's config may hold references, as whole strings or inside them:
// ${env:NAME} (an environment variable of the worker) and ${file:PATH} (a
// file's content without its trailing newline, such as a mounted
// Kubernetes secret). The template, the database and the API only ever
// hold the references. They are resolved when the step runs, and the
// values are redacted from the attempt's result, error, custom events and
// logs before any of them is stored, published or written.
package secret

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
)

// Mask replaces secret values.
const Mask = "[REDACTED]"

// ErrNotAllowed reports a reference the worker's policy does not allow.
var ErrNotAllowed = errors.New("secret reference not allowed")

var refRE = regexp.MustCompile(`\$\{(env|file):([^}]*)\}`)

// Policy says which references a worker resolves.
type Policy struct {
	// EnvPatterns are the environment variable names allowed, as path.Match
	// patterns ("*" allows all, "PAYMENTS_*" a prefix). Empty allows none.
	EnvPatterns []string
	// Dirs are the directories whose files may be read; empty allows none.
	Dirs []string
	// LookupEnv reads the environment. Default os.LookupEnv.
	LookupEnv func(string) (string, bool)
	// ReadFile reads files. Default os.ReadFile.
	ReadFile func(string) ([]byte, error)
}

// HasRefs reports whether raw holds any secret reference.
func HasRefs(raw []byte) bool { return refRE.Match(raw) }

// Resolve replaces the references in the string values of a JSON document
// and returns it with the values it used.
func (p *Policy) Resolve(raw json.RawMessage) (json.RawMessage, []string, error) {
	if len(raw) == 0 || !refRE.Match(raw) {
		return raw, nil, nil
	}
	var doc any
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, nil, fmt.Errorf("resolve secrets: %w", err)
	}
	var values []string
	var errs []error
	var walk func(v any) any
	walk = func(v any) any {
		switch t := v.(type) {
		case string:
			return refRE.ReplaceAllStringFunc(t, func(ref string) string {
				m := refRE.FindStringSubmatch(ref)
				val, err := p.lookup(m[1], m[2])
				if err != nil {
					errs = append(errs, err)
					return ref
				}
				if val != "" {
					values = append(values, val)
				}
				return val
			})
		case map[string]any:
			for k, x := range t {
				t[k] = walk(x)
			}
		case []any:
			for i, x := range t {
				t[i] = walk(x)
			}
		}
		return v
	}
	doc = walk(doc)
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return nil, nil, fmt.Errorf("resolve secrets: %w", err)
	}
	return out, values, nil
}

func (p *Policy) lookup(kind, name string) (string, error) {
	ref := "${" + kind + ":" + name + "}"
	switch kind {
	case "env":
		allowed := false
		for _, pat := range p.EnvPatterns {
			if ok, _ := path.Match(pat, name); ok {
				allowed = true
				break
			}
		}
		if !allowed || name == "" {
			return "", fmt.Errorf("%w: %s (the worker allows environment variables matching %v)", ErrNotAllowed, ref, p.EnvPatterns)
		}
		lookup := p.LookupEnv
		if lookup == nil {
			lookup = os.LookupEnv
		}
		v, ok := lookup(name)
		if !ok {
			return "", fmt.Errorf("secret %s is not set in the worker's environment", ref)
		}
		return v, nil
	case "file":
		clean := filepath.Clean(name)
		allowed := false
		for _, d := range p.Dirs {
			d = filepath.Clean(d)
			if filepath.IsAbs(clean) && (clean == d || strings.HasPrefix(clean, d+string(filepath.Separator))) {
				allowed = true
				break
			}
		}
		if !allowed {
			return "", fmt.Errorf("%w: %s (the worker reads secret files only under %v)", ErrNotAllowed, ref, p.Dirs)
		}
		read := p.ReadFile
		if read == nil {
			read = os.ReadFile
		}
		b, err := read(clean)
		if err != nil {
			return "", fmt.Errorf("secret %s cannot be read", ref)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	return "", fmt.Errorf("%w: %s", ErrNotAllowed, ref)
}

// Redactor replaces known secret values in text.
type Redactor struct {
	r *strings.Replacer
}

// NewRedactor redacts the given values, and their JSON-escaped and
// URL-escaped forms (a secret sent in a query string or path).
// Values shorter than 4 bytes are not redacted (they would mask too much);
// such secrets should not exist.
func NewRedactor(values []string) *Redactor {
	var pairs []string
	seen := map[string]bool{}
	add := func(v string) {
		if len(v) >= 4 && !seen[v] {
			seen[v] = true
			pairs = append(pairs, v, Mask)
		}
	}
	for _, v := range values {
		add(v)
		if b, err := json.Marshal(v); err == nil {
			add(string(b[1 : len(b)-1]))
		}
		add(url.QueryEscape(v))
		add(url.PathEscape(v))
	}
	if len(pairs) == 0 {
		return nil
	}
	return &Redactor{r: strings.NewReplacer(pairs...)}
}

// String redacts s.
func (r *Redactor) String(s string) string {
	if r == nil {
		return s
	}
	return r.r.Replace(s)
}

// Bytes redacts b.
func (r *Redactor) Bytes(b []byte) []byte {
	if r == nil {
		return b
	}
	return []byte(r.r.Replace(string(b)))
}

// Handler returns a slog.Handler that redacts messages and attribute
// values before passing records to h.
func (r *Redactor) Handler(h slog.Handler) slog.Handler {
	if r == nil {
		return h
	}
	return &redactingHandler{r: r, h: h}
}

type redactingHandler struct {
	r *Redactor
	h slog.Handler
}

func (h *redactingHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.h.Enabled(ctx, l)
}

func (h *redactingHandler) Handle(ctx context.Context, rec slog.Record) error {
	out := slog.NewRecord(rec.Time, rec.Level, h.r.String(rec.Message), rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.attr(a))
		return true
	})
	return h.h.Handle(ctx, out)
}

func (h *redactingHandler) attr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, h.r.String(v.String()))
	case slog.KindGroup:
		attrs := v.Group()
		out := make([]any, len(attrs))
		for i, g := range attrs {
			out[i] = h.attr(g)
		}
		return slog.Group(a.Key, out...)
	case slog.KindAny:
		if err, ok := v.Any().(error); ok {
			return slog.String(a.Key, h.r.String(err.Error()))
		}
		return slog.String(a.Key, h.r.String(fmt.Sprint(v.Any())))
	}
	return a
}

func (h *redactingHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		red[i] = h.attr(a)
	}
	return &redactingHandler{r: h.r, h: h.h.WithAttrs(red)}
}

func (h *redactingHandler) WithGroup(name string) slog.Handler {
	return &redactingHandler{r: h.r, h: h.h.WithGroup(name)}
}

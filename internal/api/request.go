package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// decodeJSON reads one JSON object into v, refusing unknown fields,
// trailing data, other media types and bodies over the limit.
func decodeJSON(r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return errorf("unsupported_media_type", "Content-Type %q is not application/json", ct)
		}
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
		if err != nil {
			if e := jsonError(err); e.(*Error).Code == "body_too_large" {
				return e
			}
		}
		return errorf("invalid_json", "the body holds more than one JSON value")
	}
	return nil
}

func jsonError(err error) error {
	var maxErr *http.MaxBytesError
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &maxErr):
		return errorf("body_too_large", "the body is larger than %d bytes", maxErr.Limit)
	case errors.Is(err, io.EOF):
		return errorf("invalid_json", "the body is empty; send a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errorf("invalid_json", "the body ends in the middle of a JSON value")
	case errors.As(err, &syntax):
		return errorf("invalid_json", "malformed JSON at byte %d: %v", syntax.Offset, err)
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "(root)"
		}
		return errorf("invalid_json", "field %s: expected %s, got JSON %s", field, typ.Type, typ.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return errorf("unknown_field", "%s", strings.TrimPrefix(err.Error(), "json: "))
	}
	return errorf("invalid_json", "%v", err)
}

// query reads query parameters, refusing unknown ones and bad values.
type query struct {
	v    url.Values
	errs []string
}

func newQuery(r *http.Request, allowed ...string) (*query, error) {
	q := &query{v: r.URL.Query()}
	ok := map[string]bool{}
	for _, a := range allowed {
		ok[a] = true
	}
	for k, vals := range q.v {
		if !ok[k] {
			return nil, errorf("invalid_parameter", "unknown query parameter %q (this endpoint accepts: %s)", k, strings.Join(allowed, ", "))
		}
		if len(vals) > 1 {
			return nil, errorf("invalid_parameter", "query parameter %q is given %d times", k, len(vals))
		}
	}
	return q, nil
}

func (q *query) str(name string, maxLen int) string {
	s := q.v.Get(name)
	if len(s) > maxLen {
		q.errs = append(q.errs, fmt.Sprintf("%s is longer than %d characters", name, maxLen))
		return ""
	}
	if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
		q.errs = append(q.errs, fmt.Sprintf("%s is not valid UTF-8 text", name))
		return ""
	}
	return s
}

func (q *query) integer(name string, def, lo, hi int) int {
	s := q.v.Get(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		q.errs = append(q.errs, fmt.Sprintf("%s must be an integer from %d to %d", name, lo, hi))
		return def
	}
	return n
}

func (q *query) int64(name string) int64 {
	s := q.v.Get(name)
	if s == "" {
		return 0
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		q.errs = append(q.errs, fmt.Sprintf("%s must be a non-negative integer", name))
		return 0
	}
	return n
}

func (q *query) time(name string) time.Time {
	s := q.v.Get(name)
	if s == "" {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		q.errs = append(q.errs, fmt.Sprintf("%s must be an RFC 3339 time such as 2026-01-02T15:04:05Z", name))
	}
	return t
}

func (q *query) duration(name string, def, lo, hi time.Duration) time.Duration {
	s := q.v.Get(name)
	if s == "" {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < lo || d > hi {
		q.errs = append(q.errs, fmt.Sprintf("%s must be a duration from %s to %s, such as 1h", name, lo, hi))
		return def
	}
	return d
}

func (q *query) list(name string, maxItems, maxLen int) []string {
	s := q.v.Get(name)
	if s == "" {
		return nil
	}
	parts := strings.Split(s, ",")
	if len(parts) > maxItems {
		q.errs = append(q.errs, fmt.Sprintf("%s has more than %d items", name, maxItems))
		return nil
	}
	for i, p := range parts {
		parts[i] = strings.TrimSpace(p)
		if parts[i] == "" || len(parts[i]) > maxLen {
			q.errs = append(q.errs, fmt.Sprintf("%s has an empty or too long item", name))
			return nil
		}
	}
	return parts
}

func (q *query) err() error {
	if len(q.errs) == 0 {
		return nil
	}
	return errorf("invalid_parameter", "%s", strings.Join(q.errs, "; "))
}

// pathID reads a path value that must look like an id.
func pathID(r *http.Request, name string) (string, error) {
	id := r.PathValue(name)
	if id == "" || len(id) > 64 || !utf8.ValidString(id) || strings.IndexByte(id, 0) >= 0 {
		return "", errorf("not_found", "no such %s", name)
	}
	return id, nil
}

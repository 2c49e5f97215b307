package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// Problem is an error response, served as application/problem+json
// (RFC 9457) with a stable machine-readable code.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	// Code is stable: clients branch on it, never on Title or Detail.
	Code string `json:"code"`
	// CorrelationID ties the response to the server's logs.
	CorrelationID string `json:"correlation_id,omitempty"`
	// Problems lists each problem of an invalid template or context.
	Problems []any `json:"problems,omitempty"`
}

// code is one entry of the registry of error codes.
type code struct {
	Status int
	Title  string
}

// codes is the registry of every error code the API returns. Codes never
// change meaning; new ones may be added.
func codes() map[string]code {
	return map[string]code{
		"invalid_json":           {http.StatusBadRequest, "The request body is not valid JSON for this endpoint"},
		"unknown_field":          {http.StatusBadRequest, "The request body has a field this endpoint does not know"},
		"invalid_parameter":      {http.StatusBadRequest, "A query parameter or header is invalid"},
		"invalid_cursor":         {http.StatusBadRequest, "The pagination cursor is invalid"},
		"unauthenticated":        {http.StatusUnauthorized, "Authentication is required"},
		"forbidden":              {http.StatusForbidden, "This token may not do this"},
		"not_found":              {http.StatusNotFound, "Not found"},
		"method_not_allowed":     {http.StatusMethodNotAllowed, "Method not allowed"},
		"conflict":               {http.StatusConflict, "The request conflicts with the current state"},
		"invalid_transition":     {http.StatusConflict, "The state machine does not allow this change"},
		"body_too_large":         {http.StatusRequestEntityTooLarge, "The request body is too large"},
		"unsupported_media_type": {http.StatusUnsupportedMediaType, "The request body must be application/json"},
		"invalid_template":       {http.StatusUnprocessableEntity, "The template is invalid"},
		"invalid_context":        {http.StatusUnprocessableEntity, "The task context does not match the template's schema"},
		"invalid_request":        {http.StatusUnprocessableEntity, "The request cannot be carried out"},
		"rate_limited":           {http.StatusTooManyRequests, "Too many requests"},
		"internal":               {http.StatusInternalServerError, "Internal error"},
		"unavailable":            {http.StatusServiceUnavailable, "The service is unavailable"},
	}
}

// Error is an API error: a registered code, a client-safe detail, and the
// cause, which is logged but never sent.
type Error struct {
	Code     string
	Detail   string
	Problems []any
	Cause    error
	// RetryAfter, in seconds, is sent as the Retry-After header.
	RetryAfter int
}

func (e *Error) Error() string {
	if e.Cause != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Detail, e.Cause)
	}
	return e.Code + ": " + e.Detail
}

func (e *Error) Unwrap() error { return e.Cause }

func errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Detail: fmt.Sprintf(format, args...)}
}

// writeProblem writes err as a problem response.
func writeProblem(w http.ResponseWriter, r *http.Request, err error) {
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{Code: "internal", Detail: "the server failed; the correlation id identifies the failure in its logs", Cause: err}
	}
	c, ok := codes()[e.Code]
	if !ok {
		c = codes()["internal"]
		e = &Error{Code: "internal", Detail: "unregistered error code " + e.Code, Cause: e}
	}
	p := Problem{Type: "urn:tasker:problem:" + e.Code, Title: c.Title, Status: c.Status, Detail: e.Detail, Code: e.Code,
		CorrelationID: correlationID(r.Context()), Problems: e.Problems}
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", fmt.Sprint(e.RetryAfter))
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(c.Status)
	_ = json.NewEncoder(w).Encode(p)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

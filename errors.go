package tasker

import (
	"errors"
	"fmt"
	"strings"

	"github.com/tasker-go/tasker/internal/lifecycle"
	"github.com/tasker-go/tasker/internal/store"
	"github.com/tasker-go/tasker/internal/template"
)

// Sentinel errors; check them with errors.Is.
var (
	// ErrNotFound reports that a task, step or template does not exist.
	ErrNotFound = store.ErrNotFound
	// ErrConflict reports that an operation does not apply to the current
	// state, such as retrying a task that has no failed step.
	ErrConflict = store.ErrConflict
	// ErrUnavailable reports a database that cannot be reached now; retrying
	// later may succeed.
	ErrUnavailable = store.ErrUnavailable
	// ErrInvalidTransition reports a state change the state machine forbids,
	// such as cancelling a complete task.
	ErrInvalidTransition = lifecycle.ErrInvalidTransition
	// ErrInvalidRequest reports a task request that cannot be accepted: an
	// unknown template, a context that does not match its schema, a missing
	// idempotency key. Nothing is stored for such a request.
	ErrInvalidRequest = errors.New("invalid request")
	// ErrInvalidCursor reports a pagination cursor that was not made by
	// this server. It wraps ErrInvalidRequest.
	ErrInvalidCursor = fmt.Errorf("invalid cursor: %w", ErrInvalidRequest)
)

// TemplateError is the error a template that fails validation returns: it
// lists every problem with its file, line and step.
type TemplateError = template.ValidationError

// TemplateProblem is one problem of a TemplateError.
type TemplateProblem = template.Problem

// ContextError reports a task context that does not match the template's
// JSON Schema. It wraps ErrInvalidRequest.
type ContextError struct {
	// Template is the template's key, namespace/name@version.
	Template string
	// Problems lists each mismatch with its JSON pointer.
	Problems []string
}

func (e *ContextError) Error() string {
	return fmt.Sprintf("context does not match the schema of %s: %s", e.Template, strings.Join(e.Problems, "; "))
}

// Unwrap makes errors.Is(err, ErrInvalidRequest) true.
func (e *ContextError) Unwrap() error { return ErrInvalidRequest }

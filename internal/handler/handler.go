// Package handler is the contract between the engine and step handlers: the
// Handler interface, what a step sees when it runs (Input) and the errors
// that steer retries (Permanent, RetryAfter). The root package re-exports it
// as tasker.Handler, tasker.StepInput, tasker.Permanent and tasker.RetryAfter.
package handler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Handler performs one step. It returns a result that is stored as JSON
// (json.RawMessage is stored as is; nil stores null) or an error. An error is
// retried with backoff unless it is Permanent; RetryAfter asks for a delay.
//
// Handle must honour ctx: it is cancelled when the step's timeout elapses or
// the worker stops. A handler may run again for the same step (a new attempt,
// or after a crash), so its side effects should be idempotent.
type Handler interface {
	Handle(ctx context.Context, in *Input) (any, error)
}

// Func adapts a function to Handler.
type Func func(ctx context.Context, in *Input) (any, error)

// Handle calls f.
func (f Func) Handle(ctx context.Context, in *Input) (any, error) { return f(ctx, in) }

// Publisher publishes custom events on behalf of a running step.
type Publisher interface {
	Publish(name string, payload map[string]any) error
}

// Input is what a step sees when it runs.
type Input struct {
	// TaskID and StepID identify the task and the step.
	TaskID string
	StepID string
	// StepName is the step's name in its template.
	StepName string
	// Namespace, TaskName and Version identify the template.
	Namespace string
	TaskName  string
	Version   string
	// Attempt is this run's attempt number, 1 for the first.
	Attempt int
	// RetryLimit is the maximum number of attempts of the step.
	RetryLimit int
	// Context is the task's JSON context.
	Context json.RawMessage
	// Config is the step's handler configuration from the template, as JSON
	// (null when the template sets none).
	Config json.RawMessage
	// Dependencies holds the results of the step's dependencies by step name.
	Dependencies map[string]json.RawMessage
	// Logger logs with the task and step as attributes.
	Logger *slog.Logger

	publisher Publisher
}

// WithPublisher returns a copy of in that publishes custom events through p.
// The engine calls it; handlers use Publish.
func (in Input) WithPublisher(p Publisher) *Input {
	in.publisher = p
	return &in
}

// Publish publishes a custom event declared by the step's template. Events
// are delivered after the attempt's outcome is committed, and only if it is
// committed (a discarded attempt publishes nothing).
func (in *Input) Publish(name string, payload map[string]any) error {
	if in.publisher == nil {
		return errors.New("publish: this step input has no publisher")
	}
	return in.publisher.Publish(name, payload)
}

// DecodeContext unmarshals the task context into v.
func (in *Input) DecodeContext(v any) error {
	if err := json.Unmarshal(orNull(in.Context), v); err != nil {
		return fmt.Errorf("decode task context: %w", err)
	}
	return nil
}

// DecodeConfig unmarshals the step's configuration into v.
func (in *Input) DecodeConfig(v any) error {
	if err := json.Unmarshal(orNull(in.Config), v); err != nil {
		return fmt.Errorf("decode step config: %w", err)
	}
	return nil
}

// DecodeDependency unmarshals the result of the dependency named step into v.
func (in *Input) DecodeDependency(step string, v any) error {
	raw, ok := in.Dependencies[step]
	if !ok {
		return fmt.Errorf("decode dependency: %q is not a dependency of step %q", step, in.StepName)
	}
	if err := json.Unmarshal(orNull(raw), v); err != nil {
		return fmt.Errorf("decode dependency %q: %w", step, err)
	}
	return nil
}

func orNull(b json.RawMessage) json.RawMessage {
	if len(b) == 0 {
		return json.RawMessage("null")
	}
	return b
}

// permanentError marks a failure that must not be retried.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as permanent: the step fails at once, without retries.
func Permanent(err error) error {
	if err == nil {
		err = errors.New("permanent failure")
	}
	return &permanentError{err: err}
}

// retryAfterError asks for a delay before the next attempt.
type retryAfterError struct {
	delay time.Duration
	err   error
}

func (e *retryAfterError) Error() string { return e.err.Error() }
func (e *retryAfterError) Unwrap() error { return e.err }

// RetryAfter marks err as retryable after delay (capped by the step's maximum
// backoff) instead of the policy's exponential backoff.
func RetryAfter(delay time.Duration, err error) error {
	if err == nil {
		err = fmt.Errorf("retry requested after %s", delay)
	}
	return &retryAfterError{delay: delay, err: err}
}

// Classification is how the engine reads a handler's error.
type Classification struct {
	// Permanent reports that the step must not be retried.
	Permanent bool
	// Delay is the delay the handler asked for, valid when Requested is set.
	Delay     time.Duration
	Requested bool
}

// Classify reads the retry instructions carried by err.
func Classify(err error) Classification {
	var c Classification
	var p *permanentError
	if errors.As(err, &p) {
		c.Permanent = true
		return c
	}
	var r *retryAfterError
	if errors.As(err, &r) {
		c.Delay, c.Requested = r.delay, true
	}
	return c
}

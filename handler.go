package tasker

import (
	"time"

	"github.com/tasker-go/tasker/internal/handler"
)

// Handler performs one step. It returns a result that is stored as JSON or
// an error. Errors are retried with the step's backoff unless marked with
// Permanent; RetryAfter asks for a specific delay. A handler may run more
// than once for a step (a retry, or a worker crash), so its side effects
// should be idempotent.
type Handler = handler.Handler

// HandlerFunc adapts a function to Handler.
type HandlerFunc = handler.Func

// StepInput is what a step sees when it runs: the task context, its
// configuration, the results of its dependencies by step name, its attempt
// number, a logger, and Publish for custom events.
type StepInput = handler.Input

// Permanent marks err as permanent: the step fails at once, without retries.
func Permanent(err error) error { return handler.Permanent(err) }

// RetryAfter marks err as retryable after delay, capped by the step's
// maximum backoff, instead of the policy's exponential backoff.
func RetryAfter(delay time.Duration, err error) error { return handler.RetryAfter(delay, err) }

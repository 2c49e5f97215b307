package builtin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"math"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/tasker-go/tasker/internal/handler"
)

// Exit codes with a meaning for the command handler, from BSD sysexits.h.
const (
	// ExitTempFail (EX_TEMPFAIL) asks for a retry, optionally after the delay
	// given by "retry_after" in a JSON object on stdout.
	ExitTempFail = 75
	// ExitConfig (EX_CONFIG) fails the step permanently.
	ExitConfig = 78
)

const (
	// DefaultMaxOutputBytes is the default CommandOptions.MaxOutputBytes.
	DefaultMaxOutputBytes = 1 << 20

	// killGrace is how long a step's process group has to exit after SIGTERM
	// before it is sent SIGKILL. It is also the exec.Cmd WaitDelay: how long
	// output pipes held open by leftover processes may delay the result.
	killGrace = 2 * time.Second
	// stderrMessageBytes bounds the stderr tail quoted in error messages.
	stderrMessageBytes = 2 << 10
	// stderrLogBytes bounds the stderr tail kept for the debug log.
	stderrLogBytes = 64 << 10
	// stdoutQuoteBytes bounds the stdout quoted when it is not JSON.
	stdoutQuoteBytes = 200
)

// CommandOptions configures the "command" handler.
type CommandOptions struct {
	// MaxOutputBytes caps a command's stdout. A command writing more fails
	// permanently with "output exceeds N bytes" and its process group is
	// terminated. Zero or negative means DefaultMaxOutputBytes (1 MiB).
	MaxOutputBytes int64
	// Env holds extra "KEY=value" environment entries appended to the
	// worker's own environment (os.Environ) for every command; a step's
	// "env" config is appended after them and wins. Default none.
	Env []string
	// Logger receives the commands' stderr and exit statuses at debug level,
	// and warnings about misbehaving commands. Default: discard.
	Logger *slog.Logger
}

// commandConfig is the "command" handler's config.
type commandConfig struct {
	Command []string          `json:"command"`
	Env     map[string]string `json:"env"`
	Dir     string            `json:"dir"`
}

// stdinDocument is the JSON document written to a command's stdin.
type stdinDocument struct {
	TaskID       string                     `json:"task_id"`
	StepID       string                     `json:"step_id"`
	StepName     string                     `json:"step_name"`
	Attempt      int                        `json:"attempt"`
	RetryLimit   int                        `json:"retry_limit"`
	Namespace    string                     `json:"namespace"`
	TaskName     string                     `json:"task_name"`
	Version      string                     `json:"version"`
	Context      json.RawMessage            `json:"context"`
	Config       json.RawMessage            `json:"config"`
	Dependencies map[string]json.RawMessage `json:"dependencies"`
}

// command is the "command" handler. It holds no per-run state and is safe
// for concurrent use.
type command struct {
	maxOutput int64
	env       []string
	logger    *slog.Logger
}

// NewCommand returns the "command" handler, which runs a program for a step.
// Config:
//
//	{"command": ["prog", "arg1"], "env": {"KEY": "value"}, "dir": "path"}
//
// "command" is required: the program and its arguments, run directly without
// a shell (the program is looked up in PATH when it contains no slash).
// "env" adds environment variables; "dir" sets the working directory
// (default: the worker's).
//
// The program reads a JSON document describing the step on stdin: task_id,
// step_id, step_name, attempt, retry_limit, namespace, task_name, version,
// context (the task context), config (the step config) and dependencies (the
// results of the step's dependencies by step name). Its exit code decides
// the outcome:
//
//   - 0: success. Stdout must be empty (result null) or exactly one JSON
//     value, the step result; anything else is a permanent error.
//   - 75 (ExitTempFail): retryable failure. If stdout is a JSON object with
//     "retry_after" (a Go duration string such as "30s", or a number of
//     seconds), the error is handler.RetryAfter with that delay.
//   - 78 (ExitConfig): permanent failure.
//   - any other status, or death by a signal: retryable failure.
//
// Failure messages carry the exit status and the last lines of stderr (at
// most 2 KiB); stderr is also logged at debug level.
//
// When ctx is done, the program's whole process group gets SIGTERM, then
// SIGKILL 2 s later, and the handler returns a retryable error wrapping
// ctx.Err() (so errors.Is(err, context.DeadlineExceeded) reports a timeout).
// Processes left in the group when the program exits are killed too. On
// Linux the program also gets SIGKILL if the worker dies. On platforms
// without process groups (Windows) only the program itself is killed.
func NewCommand(opts CommandOptions) handler.Handler {
	c := &command{
		maxOutput: opts.MaxOutputBytes,
		env:       slices.Clone(opts.Env),
		logger:    opts.Logger,
	}
	if c.maxOutput <= 0 {
		c.maxOutput = DefaultMaxOutputBytes
	}
	if c.logger == nil {
		c.logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Handle runs the step's command.
func (c *command) Handle(ctx context.Context, in *handler.Input) (any, error) {
	cfg, err := parseCommandConfig(in.Config)
	if err != nil {
		return nil, err
	}
	stdin, err := json.Marshal(stdinDocument{
		TaskID:       in.TaskID,
		StepID:       in.StepID,
		StepName:     in.StepName,
		Attempt:      in.Attempt,
		RetryLimit:   in.RetryLimit,
		Namespace:    in.Namespace,
		TaskName:     in.TaskName,
		Version:      in.Version,
		Context:      orNull(in.Context),
		Config:       orNull(in.Config),
		Dependencies: dependencies(in.Dependencies),
	})
	if err != nil {
		return nil, handler.Permanent(fmt.Errorf("command: encode stdin document: %w", err))
	}
	logger := c.logger.With(slog.String("task_id", in.TaskID), slog.String("step_name", in.StepName),
		slog.Int("attempt", in.Attempt))

	// runCtx is also cancelled, with errOutputTooLarge, when stdout overflows.
	runCtx, cancelRun := context.WithCancelCause(ctx)
	defer cancelRun(nil)

	name := cfg.Command[0]
	cmd := exec.CommandContext(runCtx, name, cfg.Command[1:]...)
	cmd.Dir = cfg.Dir
	cmd.Env = c.environ(cfg.Env)
	cmd.Stdin = bytes.NewReader(stdin)
	stdout := &cappedBuffer{limit: c.maxOutput, overflow: func() { cancelRun(errOutputTooLarge) }}
	stderr := &tailBuffer{limit: stderrLogBytes}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.WaitDelay = killGrace
	var cancelled atomic.Bool
	group := setupProcess(cmd, &cancelled)

	start := time.Now()
	if err := cmd.Start(); err != nil {
		err = fmt.Errorf("command %q: start: %w", name, err)
		if startErrorIsPermanent(err) {
			return nil, handler.Permanent(err)
		}
		return nil, err
	}
	waitErr := cmd.Wait()
	group.kill() // leftovers: background processes of a program that exited
	state := cmd.ProcessState
	if state == nil {
		return nil, fmt.Errorf("command %q: wait: %w", name, waitErr)
	}

	stderrText, stderrTotal := stderr.contents()
	if stderrTotal > 0 {
		logger.DebugContext(ctx, "builtin.command: stderr", slog.String("command", name),
			slog.String("stderr", stderrText), slog.Int64("stderr_bytes", stderrTotal))
	}
	logger.DebugContext(ctx, "builtin.command: exited", slog.String("command", name),
		slog.String("status", state.String()), slog.Duration("duration", time.Since(start)))
	if errors.Is(waitErr, exec.ErrWaitDelay) {
		logger.WarnContext(ctx, "builtin.command: output still open after exit; leftover processes were killed",
			slog.String("command", name))
	}
	tail := stderrTail(stderrText, stderrMessageBytes)

	if stdout.overflowed() {
		return nil, handler.Permanent(fmt.Errorf("command %q: output exceeds %d bytes", name, c.maxOutput))
	}
	if cancelled.Load() {
		verb := "was cancelled"
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			verb = "timed out"
		}
		return nil, fmt.Errorf("command %q %s: %w%s", name, verb, ctx.Err(), tail)
	}

	return exitOutcome(ctx, logger, name, state, bytes.TrimSpace(stdout.bytes()), tail)
}

// exitOutcome maps the exit status of a program that ran to completion, its
// trimmed stdout and its stderr tail to the step's result or error.
func exitOutcome(ctx context.Context, logger *slog.Logger, name string, state *os.ProcessState, out []byte, tail string) (any, error) {
	switch state.ExitCode() {
	case 0:
		if len(out) == 0 {
			return nil, nil
		}
		if !json.Valid(out) {
			return nil, handler.Permanent(fmt.Errorf("command %q: stdout is not JSON: %s", name, quotePrefix(out, stdoutQuoteBytes)))
		}
		return json.RawMessage(out), nil
	case ExitTempFail:
		err := fmt.Errorf("command %q asked for a retry (%s)%s", name, state, tail)
		d, ok, perr := parseRetryAfter(out)
		if perr != nil {
			logger.WarnContext(ctx, "builtin.command: ignoring invalid retry_after",
				slog.String("command", name), slog.String("error", perr.Error()))
		}
		if ok {
			return nil, handler.RetryAfter(d, err)
		}
		return nil, err
	case ExitConfig:
		return nil, handler.Permanent(fmt.Errorf("command %q failed permanently (%s)%s", name, state, tail))
	default:
		return nil, fmt.Errorf("command %q failed (%s)%s", name, state, tail)
	}
}

// environ returns the environment of a command: the worker's, then the
// handler's extra entries, then the step's (later entries win).
func (c *command) environ(stepEnv map[string]string) []string {
	env := append(os.Environ(), c.env...)
	for _, k := range slices.Sorted(maps.Keys(stepEnv)) {
		env = append(env, k+"="+stepEnv[k])
	}
	return env
}

// parseCommandConfig decodes and validates the "command" handler's config.
func parseCommandConfig(raw json.RawMessage) (commandConfig, error) {
	var cfg commandConfig
	if err := decodeConfig(nameCommand, raw, &cfg); err != nil {
		return cfg, err
	}
	bad := func(format string, args ...any) (commandConfig, error) {
		return cfg, handler.Permanent(fmt.Errorf("command config: "+format, args...))
	}
	if len(cfg.Command) == 0 {
		return bad(`field "command" is required: an array such as ["prog", "arg1"]`)
	}
	if cfg.Command[0] == "" {
		return bad(`field "command": the program name (first element) is empty`)
	}
	for i, arg := range cfg.Command {
		if strings.IndexByte(arg, 0) >= 0 {
			return bad(`field "command": element %d contains a NUL byte`, i)
		}
	}
	for k, v := range cfg.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return bad(`field "env": invalid variable name %q`, k)
		}
		if strings.IndexByte(v, 0) >= 0 {
			return bad(`field "env": value of %q contains a NUL byte`, k)
		}
	}
	if strings.IndexByte(cfg.Dir, 0) >= 0 {
		return bad(`field "dir" contains a NUL byte`)
	}
	return cfg, nil
}

// startErrorIsPermanent reports whether a failure to start a program is a
// configuration problem (no such program or directory, no permission) rather
// than a transient one (out of processes or file descriptors).
func startErrorIsPermanent(err error) bool {
	return errors.Is(err, exec.ErrNotFound) || errors.Is(err, exec.ErrDot) ||
		errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission)
}

// parseRetryAfter reads "retry_after" from a JSON object on stdout: a Go
// duration string or a number of seconds. ok is false when stdout holds no
// such field; err explains a field that is present but invalid.
func parseRetryAfter(out []byte) (d time.Duration, ok bool, err error) {
	if len(out) == 0 || out[0] != '{' {
		return 0, false, nil
	}
	var doc struct {
		RetryAfter json.RawMessage `json:"retry_after"`
	}
	if json.Unmarshal(out, &doc) != nil || len(doc.RetryAfter) == 0 || string(doc.RetryAfter) == "null" {
		return 0, false, nil
	}
	var s string
	if json.Unmarshal(doc.RetryAfter, &s) == nil {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			return 0, false, fmt.Errorf("retry_after %q is not a non-negative duration such as \"30s\"", s)
		}
		return d, true, nil
	}
	var secs float64
	if json.Unmarshal(doc.RetryAfter, &secs) == nil {
		if secs < 0 || secs > math.MaxInt64/float64(time.Second) {
			return 0, false, fmt.Errorf("retry_after %v is out of range", secs)
		}
		return time.Duration(secs * float64(time.Second)), true, nil
	}
	return 0, false, fmt.Errorf("retry_after %s is neither a duration string nor a number of seconds", doc.RetryAfter)
}

// stderrTail returns ": " and the last non-empty lines of stderr, at most max
// bytes of them, or "" when stderr has no text.
func stderrTail(stderr string, max int) string {
	s := strings.TrimSpace(stderr)
	if len(s) > max {
		s = s[len(s)-max:]
		if i := strings.IndexByte(s, '\n'); i >= 0 && i < len(s)-1 {
			s = s[i+1:] // drop the partial first line
		}
	}
	lines := strings.Split(s, "\n")
	lines = slices.DeleteFunc(lines, func(l string) bool { return strings.TrimSpace(l) == "" })
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " \t\r")
	}
	s = strings.ToValidUTF8(strings.Join(lines, "\n"), "\uFFFD")
	if s == "" {
		return ""
	}
	return ": " + s
}

// quotePrefix quotes the first max bytes of b for an error message.
func quotePrefix(b []byte, max int) string {
	if len(b) <= max {
		return fmt.Sprintf("%q", b)
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(b[cut]) {
		cut--
	}
	return fmt.Sprintf("%q... (%d bytes)", b[:cut], len(b))
}

// dependencies returns deps with absent results as null and never nil, so
// the stdin document always has an object.
func dependencies(deps map[string]json.RawMessage) map[string]json.RawMessage {
	out := make(map[string]json.RawMessage, len(deps))
	for k, v := range deps {
		out[k] = orNull(v)
	}
	return out
}

// orNull returns b, or JSON null when b is empty.
func orNull(b json.RawMessage) json.RawMessage {
	if len(bytes.TrimSpace(b)) == 0 {
		return json.RawMessage("null")
	}
	return b
}

// errOutputTooLarge cancels a command whose stdout overflows its cap.
var errOutputTooLarge = errors.New("output too large")

// cappedBuffer collects a command's stdout up to limit bytes. Past the limit
// it keeps nothing more, calls overflow once and fails the write, which makes
// exec stop reading the pipe.
type cappedBuffer struct {
	limit    int64
	overflow func()

	mu   sync.Mutex
	buf  bytes.Buffer
	over bool
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.over {
		return 0, errOutputTooLarge
	}
	if int64(b.buf.Len())+int64(len(p)) > b.limit {
		b.over = true
		b.overflow()
		return 0, errOutputTooLarge
	}
	return b.buf.Write(p)
}

// bytes returns what was collected.
func (b *cappedBuffer) bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Bytes()
}

func (b *cappedBuffer) overflowed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.over
}

// tailBuffer keeps the last limit bytes written to it and counts them all.
type tailBuffer struct {
	limit int

	mu    sync.Mutex
	buf   []byte
	total int64
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.total += int64(len(p))
	if len(p) >= b.limit {
		b.buf = append(b.buf[:0], p[len(p)-b.limit:]...)
		return len(p), nil
	}
	if drop := len(b.buf) + len(p) - b.limit; drop > 0 {
		b.buf = append(b.buf[:0], b.buf[drop:]...)
	}
	b.buf = append(b.buf, p...)
	return len(p), nil
}

// contents returns the kept tail and the number of bytes written in all.
func (b *tailBuffer) contents() (string, int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf), b.total
}

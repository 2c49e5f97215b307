// Package builtin holds the step handlers that ship with Tasker, so that a
// workflow can be declared in a template without writing Go code. A template
// names a built-in handler and gives it a JSON config, which the handler reads
// from handler.Input.Config.
//
// # Handlers
//
//   - "command" runs a program (argv, no shell) with a JSON document
//     describing the step on stdin, and maps its exit code and stdout to the
//     step's outcome: see NewCommand.
//   - "noop" returns its config's "result" field: see NewNoop.
//   - "sleep" waits for a duration, then returns its config's "result"
//     field: see NewSleep.
//
// Handlers returns them by name for registration with the engine.
//
// # Configs
//
// Every built-in decodes its config strictly: a wrong type, an unknown key or
// a missing required field is a permanent error (handler.Permanent) that
// names the bad field, so a typo in a template fails the step at once instead
// of being retried.
//
// docs/handlers.md is the user-facing reference: the config of each built-in,
// the command handler's exit-code convention and example scripts.
package builtin

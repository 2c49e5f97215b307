// Package examples holds Tasker's examples; it has no code of its own.
//
//   - templates/ holds task templates that run with the tasker CLI and need
//     nothing but a POSIX shell: linear.yaml, diamond.yaml, fanout.yaml,
//     flaky.yaml, permanent_failure.yaml and release.yaml, the front-door
//     example. Each starts with a comment saying what it shows and how to
//     run it, for example (from the repository root)
//
//     tasker run examples/templates/release.yaml
//
//   - ecommerce/ is a Go program that embeds the engine as a library and
//     runs an e-commerce order with Go step handlers: go run ./examples/ecommerce
//
// The tests of this package validate every template and run each of them
// to its end in process.
package examples

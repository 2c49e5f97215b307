package template

import (
	"fmt"
	"strconv"
	"strings"
)

// Problem is one thing wrong with a template.
type Problem struct {
	// File is the file name given to Parse; empty for FromJSON.
	File string `json:"file,omitempty"`
	// Line and Column locate the offending YAML node (1-based); 0 when the
	// problem has no place in the file (FromJSON, an unknown environment
	// requested by ParseOptions).
	Line   int `json:"line,omitempty"`
	Column int `json:"column,omitempty"`
	// Path is where the problem is inside the template, such as
	// "steps[3].depends_on[1]"; empty for the whole document.
	Path string `json:"path,omitempty"`
	// Step is the name of the step the problem is inside (also for a
	// step's environment override), empty otherwise.
	Step string `json:"step,omitempty"`
	// Message says what is wrong.
	Message string `json:"message"`
}

// String formats the problem as "FILE:LINE: step "NAME": PATH: MESSAGE",
// leaving out the parts that are empty.
func (p Problem) String() string {
	var b strings.Builder
	loc := p.File
	if p.Line > 0 {
		loc += ":" + strconv.Itoa(p.Line)
	}
	if loc != "" {
		b.WriteString(loc)
		b.WriteString(": ")
	}
	if p.Step != "" {
		fmt.Fprintf(&b, "step %q: ", p.Step)
	}
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// ValidationError lists every problem found in a template, in file order.
type ValidationError struct {
	Problems []Problem
}

// Error prints one problem per line (see Problem.String).
func (e *ValidationError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// ContextError reports a task context that does not match the template's
// context schema, or that is not JSON at all.
type ContextError struct {
	// Problems are "JSON-POINTER: MESSAGE" lines, such as
	// "/order_id: expected integer, but got string", sorted; the pointer
	// of the whole context is shown as "(root)".
	Problems []string
}

// Error implements error.
func (e *ContextError) Error() string {
	return "invalid task context: " + strings.Join(e.Problems, "; ")
}

// EventError reports a custom event that the template does not declare, or
// whose payload does not match the event's schema or is not JSON.
type EventError struct {
	// Name is the event name.
	Name string
	// Problems are "JSON-POINTER: MESSAGE" lines like ContextError's, or a
	// single sentence when the event is not declared.
	Problems []string
}

// Error implements error.
func (e *EventError) Error() string {
	return fmt.Sprintf("invalid event %q: %s", e.Name, strings.Join(e.Problems, "; "))
}

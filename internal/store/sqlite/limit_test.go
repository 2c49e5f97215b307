package sqlite

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
)

// A LIMIT or OFFSET bound as a parameter makes SQLite prepare the
// statement again on every run (see limitClause), so the store writes
// them into its statements. This test keeps it that way.
func TestNoBoundLimits(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	bound := regexp.MustCompile(`(?i)\b(LIMIT|OFFSET)\s+\?`)
	fset := token.NewFileSet()
	checked := 0
	for _, name := range files {
		if matched, _ := filepath.Match("*_test.go", name); matched {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			s, err := strconv.Unquote(lit.Value)
			if err != nil {
				t.Fatalf("%s: %v", fset.Position(lit.Pos()), err)
			}
			checked++
			if bound.MatchString(s) {
				t.Errorf("%s: a bound LIMIT or OFFSET (use limitClause): %q", fset.Position(lit.Pos()), s)
			}
			return true
		})
	}
	if checked < 100 {
		t.Fatalf("checked only %d string literals: is the test running in the package directory?", checked)
	}
}

package event

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
)

// catalogDoc is the event catalog as documented in docs/events.md.
const catalogDoc = "../../docs/events.md"

// catalogHeader is the exact header row of the catalog table.
const catalogHeader = "| event | kind | durable | keys | data | description |"

// docRow is one row of the documented catalog table.
type docRow struct {
	line    int
	name    Name
	kind    Kind
	durable bool
	keys    []string
	data    []string
}

// TestCatalogMatchesDocs checks that the catalog table of docs/events.md
// lists exactly the events of Catalog(), in the same order, with the same
// kind, durability, envelope keys and data keys.
func TestCatalogMatchesDocs(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(catalogDoc)
	if err != nil {
		t.Fatalf("read %s: %v", catalogDoc, err)
	}
	rows, err := parseCatalogTable(string(raw))
	if err != nil {
		t.Fatalf("%s: %v", catalogDoc, err)
	}
	want := Catalog()

	var gotNames, wantNames []Name
	for _, r := range rows {
		gotNames = append(gotNames, r.name)
	}
	for _, s := range want {
		wantNames = append(wantNames, s.Name)
	}
	if !slices.Equal(gotNames, wantNames) {
		for _, n := range wantNames {
			if !slices.Contains(gotNames, n) {
				t.Errorf("%s: event %s of Catalog() is missing from the table", catalogDoc, n)
			}
		}
		for _, n := range gotNames {
			if !slices.Contains(wantNames, n) {
				t.Errorf("%s: event %s is in the table but not in Catalog()", catalogDoc, n)
			}
		}
		t.Fatalf("%s: events differ from Catalog() (same order required)\n got (docs):    %v\n want (Catalog): %v", catalogDoc, gotNames, wantNames)
	}

	for i, r := range rows {
		s := want[i]
		where := fmt.Sprintf("%s:%d: %s", catalogDoc, r.line, r.name)
		if r.kind != s.Kind {
			t.Errorf("%s: kind: got (docs) %q, want (Catalog) %q", where, r.kind, s.Kind)
		}
		if r.durable != s.Durable {
			t.Errorf("%s: durable: got (docs) %s, want (Catalog) %s", where, yesNo(r.durable), yesNo(s.Durable))
		}
		if diff := describeDiff(r.keys, s.Keys); diff != "" {
			t.Errorf("%s: keys: got (docs) %v, want (Catalog) %v (%s)", where, r.keys, s.Keys, diff)
		}
		if diff := describeDiff(r.data, s.Data); diff != "" {
			t.Errorf("%s: data: got (docs) %v, want (Catalog) %v (%s)", where, r.data, s.Data, diff)
		}
	}
}

// TestParseCatalogTable checks the parser on well-formed and malformed tables,
// so that a formatting mistake in the docs fails loudly instead of being
// skipped.
func TestParseCatalogTable(t *testing.T) {
	t.Parallel()
	good := "intro\n\n" + catalogHeader + "\n|---|---|---|---|---|---|\n" +
		"| `a.b` | workflow | no | — | `x`, `y` | text with `code` |\n" +
		"| `c.d` | task lifecycle | yes | `from_state`, `to_state` | — | more |\n\nafter\n"
	rows, err := parseCatalogTable(good)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if len(rows) != 2 {
		t.Fatalf("got %d rows, want 2", len(rows))
	}
	if r := rows[0]; r.name != "a.b" || r.kind != KindWorkflow || r.durable || len(r.keys) != 0 || !slices.Equal(r.data, []string{"x", "y"}) || r.line != 5 {
		t.Errorf("row 0 = %+v", r)
	}
	if r := rows[1]; r.name != "c.d" || r.kind != KindTaskLifecycle || !r.durable || !slices.Equal(r.keys, []string{"from_state", "to_state"}) || len(r.data) != 0 {
		t.Errorf("row 1 = %+v", r)
	}

	bad := map[string]string{
		"no table":           "nothing here\n",
		"two tables":         catalogHeader + "\n|---|\n\n" + catalogHeader + "\n|---|\n",
		"no separator":       catalogHeader + "\n| `a.b` | workflow | no | — | — | x |\n",
		"empty table":        catalogHeader + "\n|---|---|---|---|---|---|\n\n",
		"wrong cell count":   catalogHeader + "\n|---|\n| `a.b` | workflow | no | — | x |\n",
		"name not in code":   catalogHeader + "\n|---|\n| a.b | workflow | no | — | — | x |\n",
		"bad durable":        catalogHeader + "\n|---|\n| `a.b` | workflow | maybe | — | — | x |\n",
		"key not in code":    catalogHeader + "\n|---|\n| `a.b` | workflow | no | step_id | — | x |\n",
		"empty list":         catalogHeader + "\n|---|\n| `a.b` | workflow | no | | — | x |\n",
		"duplicate key":      catalogHeader + "\n|---|\n| `a.b` | workflow | no | `x`, `x` | — | x |\n",
		"duplicate event":    catalogHeader + "\n|---|\n| `a.b` | workflow | no | — | — | x |\n| `a.b` | workflow | no | — | — | x |\n",
		"empty element":      catalogHeader + "\n|---|\n| `a.b` | workflow | no | `x`, | — | x |\n",
		"two names in event": catalogHeader + "\n|---|\n| `a.b`, `c.d` | workflow | no | — | — | x |\n",
	}
	for name, doc := range bad {
		if _, err := parseCatalogTable(doc); err == nil {
			t.Errorf("%s: parse succeeded, want an error", name)
		}
	}
}

// parseCatalogTable finds the one table whose header is catalogHeader and
// returns its rows. The table ends at the first line that is not a table row.
func parseCatalogTable(doc string) ([]docRow, error) {
	lines := strings.Split(doc, "\n")
	start := -1
	for i, l := range lines {
		if strings.TrimSpace(l) == catalogHeader {
			if start >= 0 {
				return nil, fmt.Errorf("the catalog header %q appears twice (lines %d and %d)", catalogHeader, start+1, i+1)
			}
			start = i
		}
	}
	if start < 0 {
		return nil, fmt.Errorf("no table with the header %q", catalogHeader)
	}
	if start+1 >= len(lines) || !isSeparator(lines[start+1]) {
		return nil, fmt.Errorf("line %d: the catalog header must be followed by a separator row such as |---|---|", start+2)
	}
	var rows []docRow
	seen := map[Name]int{}
	for i := start + 2; i < len(lines); i++ {
		l := strings.TrimSpace(lines[i])
		if !strings.HasPrefix(l, "|") {
			break
		}
		r, err := parseRow(l)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", i+1, err)
		}
		r.line = i + 1
		if prev, dup := seen[r.name]; dup {
			return nil, fmt.Errorf("line %d: event %s is already listed on line %d", i+1, r.name, prev)
		}
		seen[r.name] = r.line
		rows = append(rows, r)
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("line %d: the catalog table has no rows", start+1)
	}
	return rows, nil
}

func isSeparator(l string) bool {
	l = strings.TrimSpace(l)
	return strings.HasPrefix(l, "|") && strings.Trim(l, "|-: ") == ""
}

// parseRow parses "| `name` | kind | yes | keys | data | description |".
func parseRow(l string) (docRow, error) {
	cells := splitCells(l)
	if len(cells) != 6 {
		return docRow{}, fmt.Errorf("want 6 cells (event, kind, durable, keys, data, description), got %d in %q", len(cells), l)
	}
	var r docRow
	names, err := parseList(cells[0])
	if err != nil || len(names) != 1 {
		return docRow{}, fmt.Errorf("event cell %q: want one name in backticks", cells[0])
	}
	r.name = Name(names[0])
	r.kind = Kind(cells[1])
	switch cells[2] {
	case "yes":
		r.durable = true
	case "no":
	default:
		return docRow{}, fmt.Errorf("%s: durable cell %q: want yes or no", r.name, cells[2])
	}
	if r.keys, err = parseList(cells[3]); err != nil {
		return docRow{}, fmt.Errorf("%s: keys: %w", r.name, err)
	}
	if r.data, err = parseList(cells[4]); err != nil {
		return docRow{}, fmt.Errorf("%s: data: %w", r.name, err)
	}
	return r, nil
}

// splitCells splits a table row on unescaped "|" and trims each cell.
func splitCells(l string) []string {
	l = strings.TrimSpace(l)
	l = strings.TrimPrefix(l, "|")
	if strings.HasSuffix(l, "|") && !strings.HasSuffix(l, `\|`) {
		l = l[:len(l)-1]
	}
	var cells []string
	var cur strings.Builder
	for i := 0; i < len(l); i++ {
		switch {
		case l[i] == '\\' && i+1 < len(l) && l[i+1] == '|':
			cur.WriteByte('|')
			i++
		case l[i] == '|':
			cells = append(cells, strings.TrimSpace(cur.String()))
			cur.Reset()
		default:
			cur.WriteByte(l[i])
		}
	}
	return append(cells, strings.TrimSpace(cur.String()))
}

// parseList parses "—" (none) or a comma-separated list of names in
// backticks, and rejects duplicates.
func parseList(cell string) ([]string, error) {
	if cell == "—" {
		return nil, nil
	}
	if cell == "" {
		return nil, fmt.Errorf("empty cell: write — for none")
	}
	var out []string
	for _, part := range strings.Split(cell, ",") {
		p := strings.TrimSpace(part)
		if len(p) < 3 || !strings.HasPrefix(p, "`") || !strings.HasSuffix(p, "`") || strings.Count(p, "`") != 2 {
			return nil, fmt.Errorf("%q: want a name in backticks, in %q", p, cell)
		}
		name := p[1 : len(p)-1]
		if slices.Contains(out, name) {
			return nil, fmt.Errorf("%q is listed twice in %q", name, cell)
		}
		out = append(out, name)
	}
	return out, nil
}

// describeDiff compares got and want as sets and says how they differ, or
// returns "" when they are equal.
func describeDiff(got, want []string) string {
	var extra, missing []string
	for _, g := range got {
		if !slices.Contains(want, g) {
			extra = append(extra, g)
		}
	}
	for _, w := range want {
		if !slices.Contains(got, w) {
			missing = append(missing, w)
		}
	}
	var parts []string
	if len(extra) > 0 {
		parts = append(parts, fmt.Sprintf("only in docs: %v", extra))
	}
	if len(missing) > 0 {
		parts = append(parts, fmt.Sprintf("only in Catalog: %v", missing))
	}
	return strings.Join(parts, "; ")
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

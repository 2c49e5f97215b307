package dag

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// shape is everything a Graph reports, for one cmp.Diff per test case.
type shape struct {
	Len, Edges    int
	Parents       [][]int
	Children      [][]int
	Roots, Leaves []int
	Levels        []int
	LevelGroups   [][]int
	TopoOrder     []int
}

func shapeOf(g *Graph) shape {
	s := shape{
		Len: g.Len(), Edges: g.EdgeCount(),
		Roots: g.Roots(), Leaves: g.Leaves(),
		Levels: g.Levels(), LevelGroups: g.LevelGroups(), TopoOrder: g.TopoOrder(),
	}
	for i := range g.Len() {
		s.Parents = append(s.Parents, g.Parents(i))
		s.Children = append(s.Children, g.Children(i))
	}
	return s
}

func TestNewShapes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		n       int
		parents [][]int
		want    shape
	}{
		{
			name: "empty",
			want: shape{LevelGroups: [][]int{}, TopoOrder: []int{}, Levels: []int{}},
		},
		{
			name:    "single node",
			n:       1,
			parents: [][]int{nil},
			want: shape{
				Len: 1, Parents: [][]int{nil}, Children: [][]int{nil},
				Roots: []int{0}, Leaves: []int{0}, Levels: []int{0},
				LevelGroups: [][]int{{0}}, TopoOrder: []int{0},
			},
		},
		{
			name:    "linear",
			n:       4,
			parents: [][]int{nil, {0}, {1}, {2}},
			want: shape{
				Len: 4, Edges: 3,
				Parents:  [][]int{nil, {0}, {1}, {2}},
				Children: [][]int{{1}, {2}, {3}, nil},
				Roots:    []int{0}, Leaves: []int{3}, Levels: []int{0, 1, 2, 3},
				LevelGroups: [][]int{{0}, {1}, {2}, {3}}, TopoOrder: []int{0, 1, 2, 3},
			},
		},
		{
			name:    "linear declared backwards",
			n:       3,
			parents: [][]int{{1}, {2}, nil},
			want: shape{
				Len: 3, Edges: 2,
				Parents:  [][]int{{1}, {2}, nil},
				Children: [][]int{nil, {0}, {1}},
				Roots:    []int{2}, Leaves: []int{0}, Levels: []int{2, 1, 0},
				LevelGroups: [][]int{{2}, {1}, {0}}, TopoOrder: []int{2, 1, 0},
			},
		},
		{
			name:    "diamond",
			n:       4,
			parents: [][]int{nil, {0}, {0}, {2, 1}},
			want: shape{
				Len: 4, Edges: 4,
				Parents:  [][]int{nil, {0}, {0}, {1, 2}},
				Children: [][]int{{1, 2}, {3}, {3}, nil},
				Roots:    []int{0}, Leaves: []int{3}, Levels: []int{0, 1, 1, 2},
				LevelGroups: [][]int{{0}, {1, 2}, {3}}, TopoOrder: []int{0, 1, 2, 3},
			},
		},
		{
			name:    "fan-out",
			n:       4,
			parents: [][]int{nil, {0}, {0}, {0}},
			want: shape{
				Len: 4, Edges: 3,
				Parents:  [][]int{nil, {0}, {0}, {0}},
				Children: [][]int{{1, 2, 3}, nil, nil, nil},
				Roots:    []int{0}, Leaves: []int{1, 2, 3}, Levels: []int{0, 1, 1, 1},
				LevelGroups: [][]int{{0}, {1, 2, 3}}, TopoOrder: []int{0, 1, 2, 3},
			},
		},
		{
			name:    "fan-in",
			n:       4,
			parents: [][]int{{3, 1, 2}, nil, nil, nil},
			want: shape{
				Len: 4, Edges: 3,
				Parents:  [][]int{{1, 2, 3}, nil, nil, nil},
				Children: [][]int{nil, {0}, {0}, {0}},
				Roots:    []int{1, 2, 3}, Leaves: []int{0}, Levels: []int{1, 0, 0, 0},
				LevelGroups: [][]int{{1, 2, 3}, {0}}, TopoOrder: []int{1, 2, 3, 0},
			},
		},
		{
			name:    "longest path decides the level",
			n:       4,
			parents: [][]int{nil, {0}, {1}, {0, 2}},
			want: shape{
				Len: 4, Edges: 4,
				Parents:  [][]int{nil, {0}, {1}, {0, 2}},
				Children: [][]int{{1, 3}, {2}, {3}, nil},
				Roots:    []int{0}, Leaves: []int{3}, Levels: []int{0, 1, 2, 3},
				LevelGroups: [][]int{{0}, {1}, {2}, {3}}, TopoOrder: []int{0, 1, 2, 3},
			},
		},
		{
			name:    "disconnected components",
			n:       5,
			parents: [][]int{nil, nil, {0}, {1}, nil},
			want: shape{
				Len: 5, Edges: 2,
				Parents:  [][]int{nil, nil, {0}, {1}, nil},
				Children: [][]int{{2}, {3}, nil, nil, nil},
				Roots:    []int{0, 1, 4}, Leaves: []int{2, 3, 4}, Levels: []int{0, 0, 1, 1, 0},
				LevelGroups: [][]int{{0, 1, 4}, {2, 3}}, TopoOrder: []int{0, 1, 2, 3, 4},
			},
		},
		{
			name:    "smallest ready node first",
			n:       5,
			parents: [][]int{{4}, nil, {1}, nil, nil},
			want: shape{
				Len: 5, Edges: 2,
				Parents:  [][]int{{4}, nil, {1}, nil, nil},
				Children: [][]int{nil, {2}, nil, nil, {0}},
				Roots:    []int{1, 3, 4}, Leaves: []int{0, 2, 3}, Levels: []int{1, 0, 1, 0, 0},
				LevelGroups: [][]int{{1, 3, 4}, {0, 2}}, TopoOrder: []int{1, 2, 3, 4, 0},
			},
		},
		{
			name:    "parents shorter than n",
			n:       3,
			parents: [][]int{nil, {0}},
			want: shape{
				Len: 3, Edges: 1,
				Parents:  [][]int{nil, {0}, nil},
				Children: [][]int{{1}, nil, nil},
				Roots:    []int{0, 2}, Leaves: []int{1, 2}, Levels: []int{0, 1, 0},
				LevelGroups: [][]int{{0, 2}, {1}}, TopoOrder: []int{0, 1, 2},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g, err := New(tc.n, tc.parents)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if diff := cmp.Diff(tc.want, shapeOf(g), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("graph mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNewRejectsBadEdges(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		n       int
		parents [][]int
		want    string
	}{
		{"negative count", -1, nil, "negative node count -1"},
		{"too many parent lists", 1, [][]int{nil, nil}, "parents lists 2 nodes, more than the node count 1"},
		{"parent too large", 2, [][]int{nil, {2}}, "node 1: parent 2 out of range [0, 2)"},
		{"negative parent", 2, [][]int{{-1}, nil}, "node 0: parent -1 out of range [0, 2)"},
		{"duplicate parent", 3, [][]int{nil, nil, {0, 1, 0}}, "node 2: parent 0 listed twice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g, err := New(tc.n, tc.parents)
			if err == nil {
				t.Fatalf("New = %v, want error %q", g, tc.want)
			}
			if got := err.Error(); got != tc.want {
				t.Errorf("error = %q, want %q", got, tc.want)
			}
			var ce *CycleError
			if errors.As(err, &ce) {
				t.Errorf("error is a *CycleError, want a plain error")
			}
		})
	}
}

func TestNewDetectsCycles(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		n       int
		parents [][]int
		want    []int
		msg     string
	}{
		{"self", 3, [][]int{nil, {1}, nil}, []int{1, 1}, "dependency cycle: node 1 depends on itself"},
		{"two nodes", 2, [][]int{{1}, {0}}, []int{0, 1, 0}, "dependency cycle: 0 -> 1 -> 0"},
		// 2 before 5 before 7 before 2: 5 depends on 2, 7 on 5, 2 on 7.
		{"three nodes among others", 8, [][]int{nil, {0}, {7}, nil, nil, {2}, nil, {5}}, []int{2, 5, 7, 2}, "dependency cycle: 2 -> 5 -> 7 -> 2"},
		{"downstream of a cycle", 4, [][]int{nil, {0, 2}, {1}, {2}}, []int{1, 2, 1}, "dependency cycle: 1 -> 2 -> 1"},
		{"cycle rotated to smallest node", 3, [][]int{{1}, {2}, {0}}, []int{0, 2, 1, 0}, "dependency cycle: 0 -> 2 -> 1 -> 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := New(tc.n, tc.parents)
			var ce *CycleError
			if !errors.As(err, &ce) {
				t.Fatalf("New error = %v, want *CycleError", err)
			}
			if diff := cmp.Diff(tc.want, ce.Cycle); diff != "" {
				t.Errorf("cycle mismatch (-want +got):\n%s", diff)
			}
			if got := err.Error(); got != tc.msg {
				t.Errorf("error = %q, want %q", got, tc.msg)
			}
		})
	}
}

// TestNewDetectsCyclesOfEveryLength builds a ring of length k (node i
// depends on i-1, node 0 on k-1) inside a larger graph for k = 1..n.
func TestNewDetectsCyclesOfEveryLength(t *testing.T) {
	t.Parallel()
	const n = 12
	for k := 1; k <= n; k++ {
		parents := make([][]int, n)
		for i := range k {
			parents[i] = []int{(i - 1 + k) % k}
		}
		for i := k; i < n; i++ { // a tail hanging off the ring
			parents[i] = []int{i - 1}
		}
		_, err := New(n, parents)
		var ce *CycleError
		if !errors.As(err, &ce) {
			t.Fatalf("ring of %d: error = %v, want *CycleError", k, err)
		}
		want := make([]int, 0, k+1)
		for i := range k {
			want = append(want, i)
		}
		want = append(want, 0)
		if diff := cmp.Diff(want, ce.Cycle); diff != "" {
			t.Errorf("ring of %d: cycle mismatch (-want +got):\n%s", k, diff)
		}
	}
}

func TestCycleErrorFormat(t *testing.T) {
	t.Parallel()
	names := []string{"a", "b", "c"}
	e := &CycleError{Cycle: []int{0, 2, 1, 0}}
	if got, want := e.Format(func(i int) string { return names[i] }), "a -> c -> b -> a"; got != want {
		t.Errorf("Format = %q, want %q", got, want)
	}
}

func TestLongChainIsIterative(t *testing.T) {
	t.Parallel()
	const n = 10000
	parents := make([][]int, n)
	for i := 1; i < n; i++ {
		parents[i] = []int{i - 1}
	}
	g, err := New(n, parents)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	levels := g.Levels()
	if got := levels[n-1]; got != n-1 {
		t.Errorf("level of the last node = %d, want %d", got, n-1)
	}
	if got := len(g.LevelGroups()); got != n {
		t.Errorf("len(LevelGroups) = %d, want %d", got, n)
	}
	if diff := cmp.Diff([]int{n - 1}, g.Leaves()); diff != "" {
		t.Errorf("Leaves mismatch (-want +got):\n%s", diff)
	}

	// Close the chain into one ring of 10,000 nodes.
	parents[0] = []int{n - 1}
	_, err = New(n, parents)
	var ce *CycleError
	if !errors.As(err, &ce) {
		t.Fatalf("ring: error = %v, want *CycleError", err)
	}
	if got := len(ce.Cycle); got != n+1 {
		t.Errorf("ring: len(Cycle) = %d, want %d", got, n+1)
	}
}

func TestWideGraph(t *testing.T) {
	t.Parallel()
	// One root, 9,998 middle nodes, one sink depending on all of them.
	const n = 10000
	parents := make([][]int, n)
	sink := make([]int, 0, n-2)
	for i := 1; i < n-1; i++ {
		parents[i] = []int{0}
		sink = append(sink, i)
	}
	parents[n-1] = sink
	g, err := New(n, parents)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if got, want := g.EdgeCount(), 2*(n-2); got != want {
		t.Errorf("EdgeCount = %d, want %d", got, want)
	}
	groups := g.LevelGroups()
	if got := []int{len(groups[0]), len(groups[1]), len(groups[2])}; !slices.Equal(got, []int{1, n - 2, 1}) {
		t.Errorf("level sizes = %v, want [1 %d 1]", got, n-2)
	}
}

func TestAccessorsReturnCopies(t *testing.T) {
	t.Parallel()
	g, err := New(3, [][]int{nil, {0}, {0}})
	if err != nil {
		t.Fatal(err)
	}
	g.Children(0)[0] = 99
	g.Parents(1)[0] = 99
	g.Roots()[0] = 99
	g.Leaves()[0] = 99
	g.Levels()[0] = 99
	g.LevelGroups()[0][0] = 99
	g.TopoOrder()[0] = 99
	want := shape{
		Len: 3, Edges: 2,
		Parents:  [][]int{nil, {0}, {0}},
		Children: [][]int{{1, 2}, nil, nil},
		Roots:    []int{0}, Leaves: []int{1, 2}, Levels: []int{0, 1, 1},
		LevelGroups: [][]int{{0}, {1, 2}}, TopoOrder: []int{0, 1, 2},
	}
	if diff := cmp.Diff(want, shapeOf(g), cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("graph changed through an accessor (-want +got):\n%s", diff)
	}
}

// TestRandomGraphsAgainstReference checks New on random graphs against slow,
// obviously correct definitions of levels, order and cycles.
func TestRandomGraphsAgainstReference(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	for iter := range 500 {
		n := 1 + rng.IntN(15)
		parents := make([][]int, n)
		for i := range n {
			for p := range n {
				if p != i && rng.IntN(6) == 0 {
					parents[i] = append(parents[i], p)
				}
			}
			rng.Shuffle(len(parents[i]), func(a, b int) { parents[i][a], parents[i][b] = parents[i][b], parents[i][a] })
		}
		name := fmt.Sprintf("iteration %d: %v", iter, parents)
		g, err := New(n, parents)
		wantLevels, acyclic := referenceLevels(n, parents)
		if !acyclic {
			var ce *CycleError
			if !errors.As(err, &ce) {
				t.Fatalf("%s: error = %v, want *CycleError", name, err)
			}
			checkCycle(t, name, parents, ce.Cycle)
			continue
		}
		if err != nil {
			t.Fatalf("%s: New: %v", name, err)
		}
		if diff := cmp.Diff(wantLevels, g.Levels()); diff != "" {
			t.Errorf("%s: levels mismatch (-want +got):\n%s", name, diff)
		}
		checkTopo(t, name, g)
	}
}

// referenceLevels relaxes longest paths n times (Bellman-Ford style); if
// anything still changes after n rounds the graph has a cycle.
func referenceLevels(n int, parents [][]int) ([]int, bool) {
	levels := make([]int, n)
	for round := 0; round <= n; round++ {
		changed := false
		for i, ps := range parents {
			for _, p := range ps {
				if levels[p]+1 > levels[i] {
					levels[i] = levels[p] + 1
					changed = true
				}
			}
		}
		if !changed {
			return levels, true
		}
	}
	return nil, false
}

func checkCycle(t *testing.T, name string, parents [][]int, cycle []int) {
	t.Helper()
	if len(cycle) < 2 || cycle[0] != cycle[len(cycle)-1] {
		t.Fatalf("%s: cycle %v does not start and end at the same node", name, cycle)
	}
	if slices.Min(cycle) != cycle[0] {
		t.Errorf("%s: cycle %v does not start at its smallest node", name, cycle)
	}
	seen := map[int]bool{}
	for i := 0; i+1 < len(cycle); i++ {
		from, to := cycle[i], cycle[i+1]
		if !slices.Contains(parents[to], from) {
			t.Errorf("%s: cycle %v: %d is not a parent of %d", name, cycle, from, to)
		}
		if seen[from] {
			t.Errorf("%s: cycle %v repeats %d", name, cycle, from)
		}
		seen[from] = true
	}
}

func checkTopo(t *testing.T, name string, g *Graph) {
	t.Helper()
	order := g.TopoOrder()
	pos := make([]int, g.Len())
	for i, v := range order {
		pos[v] = i
	}
	if got := slices.Sorted(slices.Values(order)); !slices.Equal(got, seq(g.Len())) {
		t.Fatalf("%s: TopoOrder %v is not a permutation", name, order)
	}
	for v := range g.Len() {
		for _, p := range g.Parents(v) {
			if pos[p] > pos[v] {
				t.Errorf("%s: TopoOrder %v places %d before its parent %d", name, order, v, p)
			}
		}
	}
	// Smallest-first: at every position the chosen node is the smallest one
	// whose parents are all placed.
	placed := make([]bool, g.Len())
	for _, v := range order {
		for c := range v {
			if !placed[c] && allPlaced(g.Parents(c), placed) {
				t.Errorf("%s: TopoOrder %v picks %d while %d is ready", name, order, v, c)
			}
		}
		placed[v] = true
	}
	var lines []string
	for l, grp := range g.LevelGroups() {
		for _, v := range grp {
			if g.Levels()[v] != l {
				lines = append(lines, fmt.Sprintf("node %d in group %d has level %d", v, l, g.Levels()[v]))
			}
		}
	}
	if len(lines) > 0 {
		t.Errorf("%s: %s", name, strings.Join(lines, "; "))
	}
}

func allPlaced(ps []int, placed []bool) bool {
	for _, p := range ps {
		if !placed[p] {
			return false
		}
	}
	return true
}

func seq(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// Package dag is the pure directed acyclic graph over a template's steps:
// validation of the edges, cycle detection, roots, leaves, levels and a
// deterministic topological order.
//
// Nodes are the integers 0..n-1 (a step's index in its template). Every
// computation is iterative and linear in the size of the graph, so a
// 10,000-step template costs O(nodes+edges); the only exception is
// TopoOrder's smallest-index-first tie-breaking, which uses a binary heap
// (O(edges + nodes·log nodes)). The package does no I/O, reads no clock and
// starts no goroutines. A Graph is immutable once built and safe for
// concurrent use.
package dag

import (
	"container/heap"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Graph is an immutable DAG over the nodes 0..Len()-1. An edge p → c means
// that c depends on p: p is a parent of c and must finish before c starts.
type Graph struct {
	parents  [][]int // sorted ascending
	children [][]int // sorted ascending
	levels   []int
	groups   [][]int
	topo     []int
	roots    []int
	leaves   []int
	edges    int
}

// CycleError reports that the dependencies form a cycle.
type CycleError struct {
	// Cycle is the cycle as a path that starts and ends at the same node,
	// such as [2 5 7 2]: each node is a parent of the next one (2 must run
	// before 5, 5 before 7, and 7 before 2). It starts at the cycle's
	// smallest node. A node that depends on itself gives [i i].
	Cycle []int
}

// Error implements error.
func (e *CycleError) Error() string {
	if len(e.Cycle) == 2 {
		return fmt.Sprintf("dependency cycle: node %d depends on itself", e.Cycle[0])
	}
	return "dependency cycle: " + e.Format(strconv.Itoa)
}

// Format returns the cycle as "a -> b -> a", naming each node with name.
func (e *CycleError) Format(name func(int) string) string {
	parts := make([]string, len(e.Cycle))
	for i, n := range e.Cycle {
		parts[i] = name(n)
	}
	return strings.Join(parts, " -> ")
}

// New builds the graph of n nodes where parents[i] lists the nodes node i
// depends on; parents may be shorter than n (missing entries have no
// parents) but not longer. It rejects a negative n, parents out of the range
// [0, n) and a parent listed twice for the same node with a plain error; a
// node that depends on itself, or any longer cycle, yields a *CycleError.
// parents is not retained.
func New(n int, parents [][]int) (*Graph, error) {
	if n < 0 {
		return nil, fmt.Errorf("negative node count %d", n)
	}
	if len(parents) > n {
		return nil, fmt.Errorf("parents lists %d nodes, more than the node count %d", len(parents), n)
	}
	g := &Graph{
		parents:  make([][]int, n),
		children: make([][]int, n),
	}
	// seen[p] == i+1 marks p as already listed as a parent of i: duplicate
	// detection in O(edges) without a map per node.
	seen := make([]int, n)
	childCount := make([]int, n)
	parentCount := make([]int, n)
	for i, ps := range parents {
		for _, p := range ps {
			switch {
			case p < 0 || p >= n:
				return nil, fmt.Errorf("node %d: parent %d out of range [0, %d)", i, p, n)
			case p == i:
				return nil, &CycleError{Cycle: []int{i, i}}
			case seen[p] == i+1:
				return nil, fmt.Errorf("node %d: parent %d listed twice", i, p)
			}
			seen[p] = i + 1
			childCount[p]++
		}
		parentCount[i] = len(ps)
		g.edges += len(ps)
	}
	// Appending children while i ascends keeps every children list sorted;
	// appending parents while p ascends does the same for parents. No sort.
	for v := range n {
		if childCount[v] > 0 {
			g.children[v] = make([]int, 0, childCount[v])
		}
		if parentCount[v] > 0 {
			g.parents[v] = make([]int, 0, parentCount[v])
		}
	}
	for i, ps := range parents {
		for _, p := range ps {
			g.children[p] = append(g.children[p], i)
		}
	}
	for p, cs := range g.children {
		for _, c := range cs {
			g.parents[c] = append(g.parents[c], p)
		}
	}
	if err := g.order(); err != nil {
		return nil, err
	}
	g.computeLevels()
	return g, nil
}

// order computes the topological order with Kahn's algorithm, taking the
// smallest ready node first, or returns the *CycleError found among the
// nodes it could not order.
func (g *Graph) order() error {
	n := len(g.parents)
	indegree := make([]int, n)
	ready := make(intHeap, 0, n)
	for i, ps := range g.parents {
		indegree[i] = len(ps)
		if len(ps) == 0 {
			ready = append(ready, i) // ascending: already a valid heap
			g.roots = append(g.roots, i)
		}
		if len(g.children[i]) == 0 {
			g.leaves = append(g.leaves, i)
		}
	}
	g.topo = make([]int, 0, n)
	for ready.Len() > 0 {
		v := heap.Pop(&ready).(int)
		g.topo = append(g.topo, v)
		for _, c := range g.children[v] {
			indegree[c]--
			if indegree[c] == 0 {
				heap.Push(&ready, c)
			}
		}
	}
	if len(g.topo) == n {
		return nil
	}
	return &CycleError{Cycle: findCycle(g.parents, indegree)}
}

// findCycle returns a cycle among the nodes Kahn's algorithm left with a
// positive indegree. Each of them has at least one such parent, so walking
// from the smallest one to its smallest unordered parent, again and again,
// must revisit a node: the walk's loop is a cycle.
func findCycle(parents [][]int, indegree []int) []int {
	start := slices.IndexFunc(indegree, func(d int) bool { return d > 0 })
	pos := make(map[int]int) // node -> position in walk
	var walk []int
	v := start
	for {
		if at, ok := pos[v]; ok {
			walk = walk[at:]
			break
		}
		pos[v] = len(walk)
		walk = append(walk, v)
		for _, p := range parents[v] {
			if indegree[p] > 0 {
				v = p
				break
			}
		}
	}
	// walk follows child → parent; reverse it to parent → child and rotate
	// it to start at its smallest node.
	slices.Reverse(walk)
	m := slices.Index(walk, slices.Min(walk))
	cycle := make([]int, 0, len(walk)+1)
	cycle = append(cycle, walk[m:]...)
	cycle = append(cycle, walk[:m]...)
	return append(cycle, cycle[0])
}

// computeLevels assigns each node the length of the longest path from a
// root, walking the topological order once.
func (g *Graph) computeLevels() {
	g.levels = make([]int, len(g.parents))
	maxLevel := -1
	for _, v := range g.topo {
		for _, p := range g.parents[v] {
			g.levels[v] = max(g.levels[v], g.levels[p]+1)
		}
		maxLevel = max(maxLevel, g.levels[v])
	}
	g.groups = make([][]int, maxLevel+1)
	for v, l := range g.levels {
		g.groups[l] = append(g.groups[l], v)
	}
}

// Len returns the number of nodes.
func (g *Graph) Len() int { return len(g.parents) }

// EdgeCount returns the number of edges (dependencies).
func (g *Graph) EdgeCount() int { return g.edges }

// Parents returns the nodes i depends on, in ascending order.
func (g *Graph) Parents(i int) []int { return slices.Clone(g.parents[i]) }

// Children returns the nodes that depend on i, in ascending order.
func (g *Graph) Children(i int) []int { return slices.Clone(g.children[i]) }

// Roots returns the nodes without parents, in ascending order.
func (g *Graph) Roots() []int { return slices.Clone(g.roots) }

// Leaves returns the nodes without children, in ascending order.
func (g *Graph) Leaves() []int { return slices.Clone(g.leaves) }

// Levels returns the level of every node: the length of the longest path
// from a root to it. Roots are at level 0.
func (g *Graph) Levels() []int { return slices.Clone(g.levels) }

// LevelGroups returns the nodes of each level, level 0 first, each group in
// ascending order. Nodes of one level never depend on each other.
func (g *Graph) LevelGroups() [][]int {
	out := make([][]int, len(g.groups))
	for i, grp := range g.groups {
		out[i] = slices.Clone(grp)
	}
	return out
}

// TopoOrder returns every node once, each after all of its parents. Among
// the nodes whose parents are all placed, the smallest comes first, so the
// order is deterministic.
func (g *Graph) TopoOrder() []int { return slices.Clone(g.topo) }

// intHeap is a min-heap of node indices for container/heap.
type intHeap []int

func (h intHeap) Len() int           { return len(h) }
func (h intHeap) Less(i, j int) bool { return h[i] < h[j] }
func (h intHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *intHeap) Push(x any)        { *h = append(*h, x.(int)) }
func (h *intHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

package model

import (
	"slices"
	"strings"
	"time"
)

// Edge is one dependency with its traffic over a graph's range.
type Edge struct {
	Key       EdgeKey
	Sources   Source // which kinds of evidence saw it in the range
	Info      EdgeInfo
	FirstSeen time.Time // first evidence ever (within retention)
	LastSeen  time.Time // last evidence within the range
	Stats     Stats
	Health    Health
}

// Node is a service (or virtual peer) with what it served in the range.
type Node struct {
	Info    NodeInfo
	Sources Source
	Served  Stats // sum of inbound edges
	Health  Health
}

// ID of the node.
func (n *Node) ID() string { return n.Info.ID }

// Graph is the service map over [From, To). Nodes and edges are sorted by id;
// In and Out index edges by node position.
type Graph struct {
	From, To time.Time
	Nodes    []*Node
	Edges    []*Edge
	In, Out  [][]int // per node: indexes into Edges
	index    map[string]int
}

// Seconds is the length of the range, for rates.
func (g *Graph) Seconds() float64 { return g.To.Sub(g.From).Seconds() }

// NodeIndex returns the position of a node, or -1.
func (g *Graph) NodeIndex(id string) int {
	if i, ok := g.index[id]; ok {
		return i
	}
	return -1
}

// Node returns the node with the id, or nil.
func (g *Graph) Node(id string) *Node {
	if i := g.NodeIndex(id); i >= 0 {
		return g.Nodes[i]
	}
	return nil
}

// Build assembles a graph from edges and whatever is known of nodes: every
// edge endpoint becomes a node, node stats are the sum of inbound edges, and
// health is judged against the SLOs (an edge by its callee's SLO).
func Build(from, to time.Time, edges []*Edge, infos map[string]NodeInfo, slos SLOs) *Graph {
	g := &Graph{From: from, To: to, Edges: edges, index: map[string]int{}}
	addNode := func(id string) {
		if _, ok := g.index[id]; ok {
			return
		}
		info := infos[id]
		info.ID = id
		switch {
		case info.Kind != "":
		case id == UserNodeID:
			info.Kind = KindUser
		default:
			info.Kind = KindService
		}
		g.index[id] = len(g.Nodes)
		g.Nodes = append(g.Nodes, &Node{Info: info})
	}
	for _, e := range edges {
		addNode(e.Key.Source)
		addNode(e.Key.Target)
	}
	// Nodes known to a source but without traffic in the range (a Kubernetes
	// service nobody calls) are not drawn: the map shows what happens.
	g.sort()
	for _, e := range g.Edges {
		slo := slos.For(e.Key.Target)
		e.Health = slo.Judge(e.Stats.ErrorRate(), e.Stats.P99Ms())
		src, dst := g.Nodes[g.index[e.Key.Source]], g.Nodes[g.index[e.Key.Target]]
		dst.Served.Add(&e.Stats)
		dst.Sources |= e.Sources
		src.Sources |= e.Sources
	}
	for _, n := range g.Nodes {
		n.Health = slos.For(n.ID()).Judge(n.Served.ErrorRate(), n.Served.P99Ms())
	}
	return g
}

func (g *Graph) sort() {
	slices.SortFunc(g.Nodes, func(a, b *Node) int { return strings.Compare(a.ID(), b.ID()) })
	slices.SortFunc(g.Edges, func(a, b *Edge) int {
		if c := strings.Compare(a.Key.Source, b.Key.Source); c != 0 {
			return c
		}
		return strings.Compare(a.Key.Target, b.Key.Target)
	})
	g.index = make(map[string]int, len(g.Nodes))
	for i, n := range g.Nodes {
		g.index[n.ID()] = i
	}
	g.In = make([][]int, len(g.Nodes))
	g.Out = make([][]int, len(g.Nodes))
	for i, e := range g.Edges {
		s, t := g.index[e.Key.Source], g.index[e.Key.Target]
		g.Out[s] = append(g.Out[s], i)
		g.In[t] = append(g.In[t], i)
	}
}

// Subgraph keeps the given nodes and the edges between them. Node stats and
// health are kept as computed on the whole graph: a focused view must not make
// a service look healthier because its other callers are hidden.
func (g *Graph) Subgraph(keep func(n *Node) bool) *Graph {
	sub := &Graph{From: g.From, To: g.To, index: map[string]int{}}
	for _, n := range g.Nodes {
		if keep(n) {
			sub.index[n.ID()] = len(sub.Nodes)
			sub.Nodes = append(sub.Nodes, n)
		}
	}
	for _, e := range g.Edges {
		_, s := sub.index[e.Key.Source]
		_, t := sub.index[e.Key.Target]
		if s && t {
			sub.Edges = append(sub.Edges, e)
		}
	}
	sub.sort()
	return sub
}

// Focus keeps the nodes within `up` hops upstream (callers) and `down` hops
// downstream (callees) of the seeds. Seeds are the node with id `service`
// and/or every node in `namespace`. With no seed found, the graph is empty.
func (g *Graph) Focus(service, namespace string, up, down int) *Graph {
	var seeds []int
	for i, n := range g.Nodes {
		if (service != "" && n.ID() == service) || (namespace != "" && n.Info.Namespace == namespace && service == "") {
			seeds = append(seeds, i)
		}
	}
	keep := make([]bool, len(g.Nodes))
	walk := func(depth int, next func(node int) []int, other func(e *Edge) string) {
		frontier := seeds
		for _, s := range seeds {
			keep[s] = true
		}
		seen := map[int]bool{}
		for _, s := range seeds {
			seen[s] = true
		}
		for d := 0; d < depth && len(frontier) > 0; d++ {
			var nextFrontier []int
			for _, n := range frontier {
				for _, ei := range next(n) {
					m := g.index[other(g.Edges[ei])]
					if !seen[m] {
						seen[m] = true
						keep[m] = true
						nextFrontier = append(nextFrontier, m)
					}
				}
			}
			frontier = nextFrontier
		}
	}
	walk(up, func(n int) []int { return g.In[n] }, func(e *Edge) string { return e.Key.Source })
	walk(down, func(n int) []int { return g.Out[n] }, func(e *Edge) string { return e.Key.Target })
	return g.Subgraph(func(n *Node) bool { return keep[g.index[n.ID()]] })
}

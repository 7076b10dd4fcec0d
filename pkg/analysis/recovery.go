package analysis

import (
	"fmt"
	"slices"
	"strings"

	"github.com/livemap/servicemap/pkg/model"
)

// RecoveryStep is one thing to bring back: a service, or a group of services
// that call each other in a cycle and so can only come back together.
type RecoveryStep struct {
	Services []string // sorted
	Cycle    bool     // more than one service, calling each other
	Label    string   // "payment" or "cycle: a, b, c"
	// Wave numbers steps that can go in parallel: a step's callees are all
	// in earlier waves. Starts at 1.
	Wave int
}

// RecoveryOrder orders the affected services dependencies first: a service
// comes after everything it calls within the affected set. Cycles are
// collapsed into one step. Steps come in waves (everything a step calls is in
// an earlier wave), and within a wave by first name.
func RecoveryOrder(g *model.Graph, affected []string) ([]RecoveryStep, error) {
	if g == nil {
		return nil, fmt.Errorf("no graph")
	}
	// Local indexes over the affected set in node order, which is name order.
	nodes := make([]int, 0, len(affected))
	for _, name := range affected {
		i := g.NodeIndex(name)
		if i < 0 {
			return nil, fmt.Errorf("unknown service %q: not in the graph for this range", name)
		}
		nodes = append(nodes, i)
	}
	slices.Sort(nodes)
	nodes = slices.Compact(nodes)
	local := make([]int32, len(g.Nodes)) // graph index → local index, -1 outside
	for k := range local {
		local[k] = -1
	}
	for k, i := range nodes {
		local[i] = int32(k)
	}
	src, dst := ends(g)
	callees := csr(len(nodes), func(emit func(from, to int32)) {
		for ei := range g.Edges {
			if s, t := local[src[ei]], local[dst[ei]]; s >= 0 && t >= 0 && s != t {
				emit(s, t)
			}
		}
	})
	comp, ncomp := tarjan(callees)

	// Condense. members lists each component's services in name order; a
	// component waits for the distinct components it calls.
	members := csr(ncomp, func(emit func(from, to int32)) {
		for v, c := range comp {
			emit(c, int32(v))
		}
	})
	waiting := make([]int32, ncomp)
	stamp := make([]int32, ncomp) // stamp[b] == a+1: a → b already seen
	callers := csr(ncomp, func(emit func(from, to int32)) {
		clear(stamp)
		for a := range int32(ncomp) {
			for _, v := range members.of(a) {
				for _, t := range callees.of(v) {
					if b := comp[t]; b != a && stamp[b] != a+1 {
						stamp[b] = a + 1
						emit(b, a)
					}
				}
			}
		}
	})
	for b := range int32(ncomp) {
		for _, a := range callers.of(b) {
			waiting[a]++
		}
	}

	// Kahn's algorithm a wave at a time: a component is ready once every
	// component it calls is back, and each wave goes out in name order.
	var ready, next []int32
	for c := range int32(ncomp) {
		if waiting[c] == 0 {
			ready = append(ready, c)
		}
	}
	names := make([]string, 0, len(nodes)) // one backing array for every step
	steps := make([]RecoveryStep, 0, ncomp)
	for wave := 1; len(ready) > 0; wave++ {
		// A component's first member is its first name: sorting by it sorts by name.
		slices.SortFunc(ready, func(a, b int32) int { return int(members.of(a)[0] - members.of(b)[0]) })
		next = next[:0]
		for _, c := range ready {
			first := len(names)
			for _, v := range members.of(c) {
				names = append(names, g.Nodes[nodes[v]].ID())
			}
			st := RecoveryStep{Services: names[first:len(names):len(names)], Wave: wave}
			st.Label, st.Cycle = st.Services[0], len(st.Services) > 1
			if st.Cycle {
				st.Label = "cycle: " + strings.Join(st.Services, ", ")
			}
			steps = append(steps, st)
			for _, a := range callers.of(c) {
				if waiting[a]--; waiting[a] == 0 {
					next = append(next, a)
				}
			}
		}
		ready, next = next, ready
	}
	return steps, nil
}

// AffectedSet is what an incident at service touches: the service, every
// service upstream of it (virtual callers are not services to recover) and
// the unhealthy downstream path RootCause follows. Sorted.
func AffectedSet(g *model.Graph, service string) ([]string, error) {
	i, err := lookup(g, service)
	if err != nil {
		return nil, err
	}
	src, _ := ends(g)
	in := make([]bool, len(g.Nodes))
	for k, d := range upstream(g, src, i) {
		in[k] = d == 0 || (d > 0 && !entryPoint(g.Nodes[k]))
	}
	for _, name := range RootCause(g, service).Path {
		in[g.NodeIndex(name)] = true
	}
	var out []string
	for k, ok := range in { // node order is name order
		if ok {
			out = append(out, g.Nodes[k].ID())
		}
	}
	return out, nil
}

// adjacency is a compressed sparse row list: the neighbours of v are
// to[off[v]:off[v+1]]. Two flat slices instead of one slice per node keep a
// 10,000-node order to a handful of allocations.
type adjacency struct{ off, to []int32 }

func (a adjacency) of(v int32) []int32 { return a.to[a.off[v]:a.off[v+1]] }

// csr builds an adjacency over n nodes from the pairs gen emits; gen runs
// twice (count, then fill), so it must emit the same pairs both times.
// Neighbours keep the order they were emitted in.
func csr(n int, gen func(emit func(from, to int32))) adjacency {
	off := make([]int32, n+1)
	gen(func(from, _ int32) { off[from+1]++ })
	for v := range n {
		off[v+1] += off[v]
	}
	to := make([]int32, off[n])
	pos := slices.Clone(off[:n])
	gen(func(from, t int32) { to[pos[from]] = t; pos[from]++ })
	return adjacency{off, to}
}

// tarjan finds strongly connected components without recursion, so a long
// chain of 10,000 services cannot overflow the stack. comp[v] is v's
// component; components are numbered in the order they complete.
func tarjan(adj adjacency) (comp []int32, n int) {
	const none = -1
	size := len(adj.off) - 1
	index := make([]int32, size)
	low := make([]int32, size)
	comp = make([]int32, size)
	onStack := make([]bool, size)
	for v := range index {
		index[v], comp[v] = none, none
	}
	var stack []int32
	type frame struct{ v, pos int32 }
	var call []frame
	next := int32(0)
	for root := range int32(size) {
		if index[root] != none {
			continue
		}
		call = append(call[:0], frame{root, 0})
		index[root], low[root] = next, next
		next++
		stack = append(stack, root)
		onStack[root] = true
		for len(call) > 0 {
			f := &call[len(call)-1]
			v := f.v
			if out := adj.of(v); int(f.pos) < len(out) {
				w := out[f.pos]
				f.pos++
				switch {
				case index[w] == none:
					index[w], low[w] = next, next
					next++
					stack = append(stack, w)
					onStack[w] = true
					call = append(call, frame{w, 0})
				case onStack[w]:
					low[v] = min(low[v], index[w])
				}
				continue
			}
			call = call[:len(call)-1]
			if len(call) > 0 {
				p := call[len(call)-1].v
				low[p] = min(low[p], low[v])
			}
			if low[v] == index[v] {
				for {
					w := stack[len(stack)-1]
					stack = stack[:len(stack)-1]
					onStack[w] = false
					comp[w] = int32(n)
					if w == v {
						break
					}
				}
				n++
			}
		}
	}
	return comp, n
}

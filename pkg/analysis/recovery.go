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
	src, dst := ends(g)
	// Local indexes over the affected set, in name order.
	names := slices.Clone(affected)
	slices.Sort(names)
	names = slices.Compact(names)
	local := make([]int32, len(g.Nodes)) // graph index → local index, -1 outside
	for k := range local {
		local[k] = -1
	}
	for k, name := range names {
		i := g.NodeIndex(name)
		if i < 0 {
			return nil, fmt.Errorf("unknown service %q: not in the graph for this range", name)
		}
		local[i] = int32(k)
	}
	callees := make([][]int, len(names))
	for ei := range g.Edges {
		s, t := local[src[ei]], local[dst[ei]]
		if s >= 0 && t >= 0 && s != t {
			callees[s] = append(callees[s], int(t))
		}
	}
	comp, ncomp := tarjan(callees)

	// Condense: a component waits for the distinct components it calls.
	members := make([][]int, ncomp)
	for v, c := range comp {
		members[c] = append(members[c], v) // v ascending, so members sorted by name
	}
	waiting := make([]int, ncomp)   // callee components not yet recovered
	callers := make([][]int, ncomp) // components calling c
	stamp := make([]int, ncomp)     // stamp[b] == a+1: a → b already counted
	for a := range ncomp {
		for _, v := range members[a] {
			for _, t := range callees[v] {
				if b := comp[t]; b != a && stamp[b] != a+1 {
					stamp[b] = a + 1
					waiting[a]++
					callers[b] = append(callers[b], a)
				}
			}
		}
	}
	// Kahn's algorithm a wave at a time: a component is ready once every
	// component it calls is back, and each wave goes out in name order.
	var ready []int
	for c := range ncomp {
		if waiting[c] == 0 {
			ready = append(ready, c)
		}
	}
	steps := make([]RecoveryStep, 0, ncomp)
	for wave := 1; len(ready) > 0; wave++ {
		// members[c][0] is the local index of c's first name: names sort with it.
		slices.SortFunc(ready, func(a, b int) int { return members[a][0] - members[b][0] })
		var next []int
		for _, c := range ready {
			st := RecoveryStep{Wave: wave, Cycle: len(members[c]) > 1}
			for _, v := range members[c] {
				st.Services = append(st.Services, names[v])
			}
			st.Label = st.Services[0]
			if st.Cycle {
				st.Label = "cycle: " + strings.Join(st.Services, ", ")
			}
			steps = append(steps, st)
			for _, a := range callers[c] {
				if waiting[a]--; waiting[a] == 0 {
					next = append(next, a)
				}
			}
		}
		ready = next
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
	set := map[string]bool{service: true}
	for k, d := range upstream(g, src, i) {
		if d > 0 && !entryPoint(g.Nodes[k]) {
			set[g.Nodes[k].ID()] = true
		}
	}
	for _, name := range RootCause(g, service).Path {
		set[name] = true
	}
	out := make([]string, 0, len(set))
	for name := range set {
		out = append(out, name)
	}
	slices.Sort(out)
	return out, nil
}

// tarjan finds strongly connected components without recursion, so a long
// chain of 10,000 services cannot overflow the stack. comp[v] is v's
// component; components are numbered in the order they complete.
func tarjan(adj [][]int) (comp []int, n int) {
	const none = -1
	index := make([]int, len(adj))
	low := make([]int, len(adj))
	comp = make([]int, len(adj))
	onStack := make([]bool, len(adj))
	for v := range index {
		index[v], comp[v] = none, none
	}
	var stack []int
	type frame struct{ v, pos int }
	next := 0
	for root := range adj {
		if index[root] != none {
			continue
		}
		call := []frame{{root, 0}}
		index[root], low[root] = next, next
		next++
		stack = append(stack, root)
		onStack[root] = true
		for len(call) > 0 {
			f := &call[len(call)-1]
			v := f.v
			if f.pos < len(adj[v]) {
				w := adj[v][f.pos]
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
					comp[w] = n
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

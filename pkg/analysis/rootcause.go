package analysis

import (
	"strings"

	"github.com/livemap/servicemap/pkg/model"
)

// Cause is the kind of RootCause verdict.
type Cause string

const (
	CauseDownstream     Cause = "downstream"      // an unhealthy dependency, named in Culprit
	CauseSelf           Cause = "self"            // the service itself
	CauseUpstream       Cause = "upstream"        // the service is fine; only its callers are not
	CauseHealthy        Cause = "healthy"         // nothing unhealthy around it
	CauseUnknownService Cause = "unknown-service" // not in the graph
)

// EdgeEvidence is one call relation looked at, with what was measured on it.
type EdgeEvidence struct {
	Source, Target string
	Calls          uint64
	ErrorRate      float64 // NaN without calls
	P99Ms          float64 // NaN without timings
	Health         model.Health
}

// NodeEvidence is one service looked at.
type NodeEvidence struct {
	Service   string
	Health    model.Health
	ErrorRate float64 // of what it served; NaN without calls
	P99Ms     float64
}

// RootCauseResult is where a failure seen at Service most likely starts.
type RootCauseResult struct {
	Service string
	Cause   Cause
	Culprit string // the likely origin; "" when healthy or upstream only
	Verdict string // "likely downstream: X (via A → B → X)", "likely in this service", ...
	Path    []string
	// Edges and Nodes are the evidence: the path's edges and nodes for
	// downstream, the service for self, the unhealthy callers and their
	// calls for upstream.
	Edges []EdgeEvidence
	Nodes []NodeEvidence
}

// RootCause follows unhealthy (yellow or red) edges downstream from the
// service to the deepest unhealthy dependency. A call that would return to a
// service already on the current path is not followed, so cycles end.
//
// Among unhealthy calls out of a service the walk takes the one leading to
// the longest further chain, then the one with the higher error rate, then
// the callee first by name.
func RootCause(g *model.Graph, service string) RootCauseResult {
	r := RootCauseResult{Service: service}
	s, err := lookup(g, service)
	if err != nil {
		r.Cause, r.Verdict = CauseUnknownService, err.Error()
		return r
	}
	_, dst := ends(g)
	next := deepestUnhealthy(g, dst, s)
	if next[s] >= 0 {
		r.Cause = CauseDownstream
		r.Path = []string{service}
		r.Nodes = []NodeEvidence{nodeEvidence(g.Nodes[s])}
		for v := s; next[v] >= 0; {
			e := g.Edges[next[v]]
			v = int(dst[next[v]])
			r.Path = append(r.Path, e.Key.Target)
			r.Edges = append(r.Edges, edgeEvidence(e))
			r.Nodes = append(r.Nodes, nodeEvidence(g.Nodes[v]))
		}
		r.Culprit = r.Path[len(r.Path)-1]
		r.Verdict = "likely downstream: " + r.Culprit + " (via " + strings.Join(r.Path, " → ") + ")"
		return r
	}
	if unhealthy(g.Nodes[s].Health) {
		r.Cause, r.Culprit, r.Verdict = CauseSelf, service, "likely in this service"
		r.Nodes = []NodeEvidence{nodeEvidence(g.Nodes[s])}
		return r
	}
	for _, ei := range g.In[s] { // In is sorted by caller name
		e := g.Edges[ei]
		caller := g.Nodes[g.NodeIndex(e.Key.Source)] // a handful of callers: no need for ends
		if unhealthy(caller.Health) {
			r.Nodes = append(r.Nodes, nodeEvidence(caller))
			r.Edges = append(r.Edges, edgeEvidence(e))
		}
	}
	if len(r.Nodes) > 0 {
		r.Cause, r.Verdict = CauseUpstream, "upstream callers only"
		return r
	}
	r.Cause, r.Verdict = CauseHealthy, "healthy"
	return r
}

// deepestUnhealthy runs an iterative depth-first search over unhealthy edges
// from s. Dropping the edges back to a node still on the stack leaves a DAG
// whose finishing order is reverse topological, so each node's longest
// further chain is known when it finishes. next[v] is the chosen edge out of
// v (-1: none); it is only meaningful for nodes reached from s.
func deepestUnhealthy(g *model.Graph, dst []int32, s int) []int {
	const (
		unseen = iota
		onStack
		done
	)
	state := make([]uint8, len(g.Nodes))
	depth := make([]int, len(g.Nodes))
	next := make([]int, len(g.Nodes))
	type frame struct{ node, pos int }
	stack := []frame{{s, 0}}
	state[s] = onStack
	for len(stack) > 0 {
		f := &stack[len(stack)-1]
		v := f.node
		if f.pos < len(g.Out[v]) {
			ei := g.Out[v][f.pos]
			f.pos++
			if t := int(dst[ei]); unhealthy(g.Edges[ei].Health) && state[t] == unseen {
				state[t] = onStack
				stack = append(stack, frame{t, 0})
			}
			continue
		}
		// All callees explored: those done form the DAG below v.
		best := -1
		for _, ei := range g.Out[v] {
			if !unhealthy(g.Edges[ei].Health) || state[dst[ei]] != done {
				continue
			}
			if best < 0 || deeper(g, dst, depth, ei, best) {
				best = ei
			}
		}
		next[v] = best
		if best >= 0 {
			depth[v] = 1 + depth[dst[best]]
		}
		state[v] = done
		stack = stack[:len(stack)-1]
	}
	return next
}

// deeper reports whether edge a leads to a better culprit than edge b: a
// longer further chain, then a higher error rate, then the callee's name.
func deeper(g *model.Graph, dst []int32, depth []int, a, b int) bool {
	ea, eb := g.Edges[a], g.Edges[b]
	da, db := depth[dst[a]], depth[dst[b]]
	if da != db {
		return da > db
	}
	ra, rb := orNeg1(ea.Stats.ErrorRate()), orNeg1(eb.Stats.ErrorRate())
	if ra != rb {
		return ra > rb
	}
	return ea.Key.Target < eb.Key.Target
}

func edgeEvidence(e *model.Edge) EdgeEvidence {
	return EdgeEvidence{
		Source: e.Key.Source, Target: e.Key.Target, Calls: e.Stats.Calls,
		ErrorRate: e.Stats.ErrorRate(), P99Ms: e.Stats.P99Ms(), Health: e.Health,
	}
}

func nodeEvidence(n *model.Node) NodeEvidence {
	return NodeEvidence{Service: n.ID(), Health: n.Health, ErrorRate: n.Served.ErrorRate(), P99Ms: n.Served.P99Ms()}
}

// Package analysis answers incident-response questions on a built service
// graph: who depends on a service (Impact), how many external clients its
// failure reaches (BlastRadius), where a failure likely starts (RootCause),
// in which order to bring services back (RecoveryOrder), what changed between
// two ranges (Diff) and how far a declared architecture has drifted from what
// is observed (Drift).
//
// Everything here is a pure function of a *model.Graph: no I/O, no clocks,
// and every list comes out in a deterministic order. docs/incident.md states
// the rules and tie-breaks.
package analysis

import (
	"fmt"
	"math"

	"github.com/livemap/servicemap/pkg/model"
)

// unhealthy is "degraded" in every answer: approaching a limit counts, since
// during an incident yellow is usually red a minute later.
func unhealthy(h model.Health) bool { return h == model.HealthYellow || h == model.HealthRed }

// entryPoint reports whether a node is a virtual caller (the outside world)
// rather than a service someone owns.
func entryPoint(n *model.Node) bool {
	return n.Info.Kind == model.KindUser || n.Info.Kind == model.KindExternal
}

func lookup(g *model.Graph, service string) (int, error) {
	if g == nil {
		return -1, fmt.Errorf("unknown service %q: no graph", service)
	}
	i := g.NodeIndex(service)
	if i < 0 {
		return -1, fmt.Errorf("unknown service %q: not in the graph for this range", service)
	}
	return i, nil
}

// ends gives, for each edge index, the positions of its caller and callee.
// Reading them off In and Out avoids a map lookup per edge per step.
func ends(g *model.Graph) (src, dst []int32) {
	src, dst = make([]int32, len(g.Edges)), make([]int32, len(g.Edges))
	for n := range g.Nodes {
		for _, ei := range g.Out[n] {
			src[ei] = int32(n)
		}
		for _, ei := range g.In[n] {
			dst[ei] = int32(n)
		}
	}
	return src, dst
}

// upstream walks callers breadth-first from node i and returns the shortest
// hop count of every node that transitively calls it (-1: does not; i: 0).
func upstream(g *model.Graph, src []int32, i int) []int32 {
	dist := make([]int32, len(g.Nodes))
	for k := range dist {
		dist[k] = -1
	}
	dist[i] = 0
	queue := make([]int32, 1, len(g.Nodes))
	queue[0] = int32(i)
	for head := 0; head < len(queue); head++ {
		n := queue[head]
		for _, ei := range g.In[n] {
			if m := src[ei]; dist[m] < 0 {
				dist[m] = dist[n] + 1
				queue = append(queue, m)
			}
		}
	}
	return dist
}

// orNeg1 maps NaN (no calls, no timings) to -1 so comparisons stay total.
func orNeg1(v float64) float64 {
	if math.IsNaN(v) {
		return -1
	}
	return v
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

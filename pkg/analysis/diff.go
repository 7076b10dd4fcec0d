package analysis

import (
	"cmp"
	"fmt"
	"math"

	"github.com/livemap/servicemap/pkg/model"
)

// DiffThresholds say how big a change must be to be reported. Zero fields
// take the defaults.
type DiffThresholds struct {
	ErrorRatePoints float64 // absolute error-rate change, as a fraction: 0.01 = 1 percentage point
	P99Relative     float64 // relative p99 change: 0.5 = 50 %
}

// DefaultDiffThresholds: 1 percentage point of errors, 50 % of p99.
var DefaultDiffThresholds = DiffThresholds{ErrorRatePoints: 0.01, P99Relative: 0.5}

// Change is one node or edge present in both graphs whose traffic or
// protocol moved past a threshold. Before/After values are NaN when there
// was nothing to measure on that side.
type Change struct {
	ID   string        // node id, or edge id "a->b"
	Edge model.EdgeKey // zero for a node

	ErrorRateBefore, ErrorRateAfter float64
	P99Before, P99After             float64
	ProtocolBefore, ProtocolAfter   string // edges only
	HealthBefore, HealthAfter       model.Health

	// Which rules fired, and why in words: "error rate 0.5 % → 4.0 % (+3.5 pp)".
	ErrorRateChanged, P99Changed, ProtocolChanged bool
	Reasons                                       []string
}

// GraphDiff is what changed from a baseline range to the current one.
// Every list is sorted by id.
type GraphDiff struct {
	AddedNodes, RemovedNodes []string
	AddedEdges, RemovedEdges []model.EdgeKey
	ChangedNodes             []Change // by what they served
	ChangedEdges             []Change
}

// Empty reports whether nothing changed.
func (d GraphDiff) Empty() bool {
	return len(d.AddedNodes)+len(d.RemovedNodes)+len(d.AddedEdges)+len(d.RemovedEdges)+
		len(d.ChangedNodes)+len(d.ChangedEdges) == 0
}

// Diff compares two graphs. A value is only compared when both sides have
// it: an edge that gained its first timed call has no p99 to change from.
func Diff(baseline, current *model.Graph, th DiffThresholds) GraphDiff {
	if th.ErrorRatePoints <= 0 {
		th.ErrorRatePoints = DefaultDiffThresholds.ErrorRatePoints
	}
	if th.P99Relative <= 0 {
		th.P99Relative = DefaultDiffThresholds.P99Relative
	}
	if baseline == nil {
		baseline = &model.Graph{}
	}
	if current == nil {
		current = &model.Graph{}
	}
	var d GraphDiff
	// Both graphs are sorted by id: walk them side by side.
	mergeSorted(len(baseline.Nodes), len(current.Nodes),
		func(i, j int) int { return cmp.Compare(baseline.Nodes[i].ID(), current.Nodes[j].ID()) },
		func(i int) { d.RemovedNodes = append(d.RemovedNodes, baseline.Nodes[i].ID()) },
		func(j int) { d.AddedNodes = append(d.AddedNodes, current.Nodes[j].ID()) },
		func(i, j int) {
			b, c := baseline.Nodes[i], current.Nodes[j]
			ch := compare(th, &b.Served, &c.Served, "", "")
			ch.ID, ch.HealthBefore, ch.HealthAfter = c.ID(), b.Health, c.Health
			if len(ch.Reasons) > 0 {
				d.ChangedNodes = append(d.ChangedNodes, ch)
			}
		})
	mergeSorted(len(baseline.Edges), len(current.Edges),
		func(i, j int) int { return cmpKey(baseline.Edges[i].Key, current.Edges[j].Key) },
		func(i int) { d.RemovedEdges = append(d.RemovedEdges, baseline.Edges[i].Key) },
		func(j int) { d.AddedEdges = append(d.AddedEdges, current.Edges[j].Key) },
		func(i, j int) {
			b, c := baseline.Edges[i], current.Edges[j]
			ch := compare(th, &b.Stats, &c.Stats, b.Info.Protocol, c.Info.Protocol)
			ch.ID, ch.Edge, ch.HealthBefore, ch.HealthAfter = c.Key.ID(), c.Key, b.Health, c.Health
			if len(ch.Reasons) > 0 {
				d.ChangedEdges = append(d.ChangedEdges, ch)
			}
		})
	return d
}

func compare(th DiffThresholds, b, c *model.Stats, protoB, protoC string) Change {
	ch := Change{
		ErrorRateBefore: b.ErrorRate(), ErrorRateAfter: c.ErrorRate(),
		P99Before: b.P99Ms(), P99After: c.P99Ms(),
		ProtocolBefore: protoB, ProtocolAfter: protoC,
	}
	// A hair of slack so 2 % - 1 % is not "more than 1 pp" by rounding.
	const eps = 1e-12
	if eb, ec := ch.ErrorRateBefore, ch.ErrorRateAfter; !math.IsNaN(eb) && !math.IsNaN(ec) && math.Abs(ec-eb) > th.ErrorRatePoints+eps {
		ch.ErrorRateChanged = true
		ch.Reasons = append(ch.Reasons, fmt.Sprintf("error rate %.1f %% → %.1f %% (%+.1f pp)", 100*eb, 100*ec, 100*(ec-eb)))
	}
	if pb, pc := ch.P99Before, ch.P99After; !math.IsNaN(pb) && !math.IsNaN(pc) && pb > 0 && math.Abs(pc-pb)/pb > th.P99Relative+eps {
		ch.P99Changed = true
		ch.Reasons = append(ch.Reasons, fmt.Sprintf("p99 %.0f ms → %.0f ms (%+.0f %%)", pb, pc, 100*(pc-pb)/pb))
	}
	// An unknown protocol on one side is missing evidence, not a change.
	if protoB != "" && protoC != "" && protoB != protoC {
		ch.ProtocolChanged = true
		ch.Reasons = append(ch.Reasons, fmt.Sprintf("protocol %s → %s", protoB, protoC))
	}
	return ch
}

// mergeSorted walks two sorted sequences of lengths n and m once.
func mergeSorted(n, m int, cmp func(i, j int) int, onlyA, onlyB func(int), both func(i, j int)) {
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case j == m || (i < n && cmp(i, j) < 0):
			onlyA(i)
			i++
		case i == n || cmp(i, j) > 0:
			onlyB(j)
			j++
		default:
			both(i, j)
			i++
			j++
		}
	}
}

func cmpKey(a, b model.EdgeKey) int {
	if c := cmp.Compare(a.Source, b.Source); c != 0 {
		return c
	}
	return cmp.Compare(a.Target, b.Target)
}

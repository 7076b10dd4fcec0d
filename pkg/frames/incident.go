package frames

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/livemap/servicemap/pkg/analysis"
	"github.com/livemap/servicemap/pkg/model"
)

// Colours of the changes view. Unchanged parts are a neutral blue so that
// "added" green is not mistaken for "healthy".
const (
	ChangeAddedColor     = "#73BF69"
	ChangeRemovedColor   = "#8e8e8e"
	ChangeChangedColor   = "#FADE2A"
	ChangeUnchangedColor = "#8AB8FF"
	removedDashes        = "6 3"
)

var nan = math.NaN()

// ImpactInput is everything the impact query found out about one service.
type ImpactInput struct {
	Scope     analysis.ImpactScope
	Blast     analysis.BlastRadiusResult
	RootCause analysis.RootCauseResult
	Affected  []string
	Recovery  []analysis.RecoveryStep
}

func hops(n int) string {
	if n == 1 {
		return "1 hop"
	}
	return fmt.Sprintf("%d hops", n)
}

// Impact returns the node graph of the incident (the affected set and every
// upstream dependent, entry points included) and the tables summary,
// dependents, root_cause and recovery_order.
//
// On the graph, color stays the health; detail__impact says what each node
// is to the incident ("target", "upstream dependent (2 hops)", "root-cause
// path", ...); highlighted marks the target and the root-cause evidence
// (path nodes and edges) so the likely propagation path stands out.
func Impact(g *model.Graph, in ImpactInput, links Links, refID string, warnings []string) data.Frames {
	roles := map[string][]string{in.Scope.Service: {"target"}}
	for _, d := range in.Scope.Upstream {
		roles[d.Service] = append(roles[d.Service], "upstream dependent ("+hops(d.Hops)+")")
	}
	for _, d := range in.Scope.EntryPoints {
		roles[d.Service] = append(roles[d.Service], "entry point ("+hops(d.Hops)+")")
	}
	for i, s := range in.RootCause.Path {
		switch {
		case i == 0:
		case s == in.RootCause.Culprit:
			roles[s] = append(roles[s], "root-cause path: likely origin")
		default:
			roles[s] = append(roles[s], "root-cause path")
		}
	}
	for _, s := range in.Affected {
		if _, ok := roles[s]; !ok {
			roles[s] = []string{"affected"}
		}
	}
	hiNodes := map[string]bool{in.Scope.Service: true}
	for _, n := range in.RootCause.Nodes {
		hiNodes[n.Service] = true
	}
	hiEdges := map[model.EdgeKey]bool{}
	for _, e := range in.RootCause.Edges {
		hiEdges[model.EdgeKey{Source: e.Source, Target: e.Target}] = true
	}
	sub := g.Subgraph(func(n *model.Node) bool { _, ok := roles[n.ID()]; return ok })
	nodes, edges := NodeGraph(sub, links, warnings)
	nodes.RefID, edges.RefID = refID, refID

	impact, nodeHi := make([]string, len(sub.Nodes)), make([]bool, len(sub.Nodes))
	for i, n := range sub.Nodes {
		impact[i] = strings.Join(roles[n.ID()], "; ")
		nodeHi[i] = hiNodes[n.ID()]
	}
	nodes.Fields = append(nodes.Fields,
		data.NewField("highlighted", nil, nodeHi),
		withConfig(data.NewField("detail__impact", nil, impact), "Role in the incident", ""))
	edgeHi := make([]bool, len(sub.Edges))
	for i, e := range sub.Edges {
		edgeHi[i] = hiEdges[e.Key]
	}
	edges.Fields = append(edges.Fields, data.NewField("highlighted", nil, edgeHi))

	return data.Frames{nodes, edges,
		impactSummary(in, refID, warnings),
		dependentsTable(in.Scope, refID),
		rootCauseTable(in.RootCause, refID),
		recoveryTable(in.Recovery, refID),
	}
}

func impactSummary(in ImpactInput, refID string, warnings []string) *data.Frame {
	blast := in.Blast.Summary
	// The numbers are null, not 0, when there is nothing to count users with.
	var users, total *int64
	var share *float64
	if in.Blast.Known {
		u, t, s := int64(in.Blast.Users), int64(in.Blast.Total), in.Blast.Share
		users, total, share = &u, &t, &s
	} else {
		blast = in.Blast.Reason
	}
	return Table("summary", refID, warnings,
		Column{Name: "service", Display: "Service", Values: []string{in.Scope.Service}},
		Column{Name: "health", Display: "Health", Values: []string{in.Scope.Health.String()}},
		Column{Name: "summary", Display: "Summary", Values: []string{in.Scope.Summary}},
		Column{Name: "degraded", Display: "Degraded upstream", Values: []int64{int64(in.Scope.Degraded)}},
		Column{Name: "root_cause", Display: "Root cause", Values: []string{in.RootCause.Verdict}},
		Column{Name: "cause", Display: "Cause", Values: []string{string(in.RootCause.Cause)}},
		Column{Name: "culprit", Display: "Likely origin", Values: []string{in.RootCause.Culprit}},
		Column{Name: "blast_radius", Display: "Blast radius", Values: []string{blast}},
		Column{Name: "blast_users", Display: "Users reached", Values: []*int64{users}},
		Column{Name: "blast_total_users", Display: "Users at all entry points", Values: []*int64{total}},
		Column{Name: "blast_share", Display: "Share of users", Unit: "percentunit", Values: []*float64{share}},
		Column{Name: "blast_entry_points", Display: "Entry points", Values: []string{strings.Join(in.Blast.Entries, ", ")}},
	)
}

func dependentsTable(s analysis.ImpactScope, refID string) *data.Frame {
	deps := append(slices.Clone(s.Upstream), s.EntryPoints...)
	slices.SortStableFunc(deps, func(a, b analysis.Dependent) int {
		return cmp.Or(cmp.Compare(a.Hops, b.Hops), strings.Compare(a.Service, b.Service))
	})
	n := len(deps)
	names, kinds, health := make([]string, n), make([]string, n), make([]string, n)
	hopCount := make([]int64, n)
	for i, d := range deps {
		names[i], kinds[i], hopCount[i], health[i] = d.Service, string(d.Kind), int64(d.Hops), d.Health.String()
	}
	return Table("dependents", refID, nil,
		Column{Name: "service", Display: "Service", Values: names},
		Column{Name: "kind", Display: "Kind", Values: kinds},
		Column{Name: "hops", Display: "Hops", Values: hopCount},
		Column{Name: "health", Display: "Health", Values: health},
	)
}

func rootCauseTable(r analysis.RootCauseResult, refID string) *data.Frame {
	n := len(r.Edges)
	steps, calls := make([]int64, n), make([]uint64, n)
	srcs, dsts, health := make([]string, n), make([]string, n), make([]string, n)
	errs, p99s := make([]*float64, n), make([]*float64, n)
	for i, e := range r.Edges {
		steps[i], srcs[i], dsts[i], calls[i] = int64(i+1), e.Source, e.Target, e.Calls
		errs[i], p99s[i], health[i] = optional(e.ErrorRate), optional(e.P99Ms), e.Health.String()
	}
	return Table("root_cause", refID, nil,
		Column{Name: "step", Display: "Step", Values: steps},
		Column{Name: "source", Display: "Source", Values: srcs},
		Column{Name: "target", Display: "Target", Values: dsts},
		Column{Name: "calls", Display: "Calls", Values: calls},
		Column{Name: "error_rate", Display: "Error rate", Unit: "percentunit", Values: errs},
		Column{Name: "p99_ms", Display: "p99 latency", Unit: "ms", Values: p99s},
		Column{Name: "health", Display: "Health", Values: health},
	)
}

func recoveryTable(steps []analysis.RecoveryStep, refID string) *data.Frame {
	n := len(steps)
	num, wave := make([]int64, n), make([]int64, n)
	services, labels := make([]string, n), make([]string, n)
	cycle := make([]bool, n)
	for i, s := range steps {
		num[i], wave[i] = int64(i+1), int64(s.Wave)
		services[i], cycle[i], labels[i] = strings.Join(s.Services, ", "), s.Cycle, s.Label
	}
	return Table("recovery_order", refID, nil,
		Column{Name: "step", Display: "Step", Values: num},
		Column{Name: "wave", Display: "Wave", Values: wave},
		Column{Name: "services", Display: "Services", Values: services},
		Column{Name: "cycle", Display: "Cycle", Values: cycle},
		Column{Name: "label", Display: "Label", Values: labels},
	)
}

// ChangesInput is a diff with the graphs it came from. Union holds every
// node and edge of both (removed edges with their baseline traffic).
type ChangesInput struct {
	Baseline, Current, Union *model.Graph
	Diff                     analysis.GraphDiff
}

type changeRow struct {
	kind, id, change, reasons string
	errB, errA, p99B, p99A    float64
	protocol                  string
}

// Changes returns the changes table (nodes first, then edges, each by id)
// and the node graph of the union, coloured by change: added green, removed
// grey (dashed edges), changed yellow, unchanged neutral blue. The health
// moves to detail__health only; detail__change says what happened.
func Changes(in ChangesInput, links Links, refID string, warnings []string) data.Frames {
	nodeChange, edgeChange := map[string]string{}, map[string]string{}
	var rows []changeRow
	nodeVals := func(g *model.Graph, id string) (float64, float64) {
		if n := g.Node(id); n != nil {
			return n.Served.ErrorRate(), n.Served.P99Ms()
		}
		return nan, nan
	}
	edgeOf := func(g *model.Graph, k model.EdgeKey) *model.Edge {
		i := g.NodeIndex(k.Source)
		if i < 0 {
			return nil
		}
		for _, ei := range g.Out[i] {
			if g.Edges[ei].Key == k {
				return g.Edges[ei]
			}
		}
		return nil
	}
	for _, id := range in.Diff.AddedNodes {
		nodeChange[id] = "added"
		e, p := nodeVals(in.Current, id)
		rows = append(rows, changeRow{kind: "node", id: id, change: "added", errB: nan, p99B: nan, errA: e, p99A: p})
	}
	for _, id := range in.Diff.RemovedNodes {
		nodeChange[id] = "removed"
		e, p := nodeVals(in.Baseline, id)
		rows = append(rows, changeRow{kind: "node", id: id, change: "removed", errB: e, p99B: p, errA: nan, p99A: nan})
	}
	for _, c := range in.Diff.ChangedNodes {
		nodeChange[c.ID] = "changed: " + strings.Join(c.Reasons, "; ")
		rows = append(rows, changeRow{kind: "node", id: c.ID, change: "changed", reasons: strings.Join(c.Reasons, "; "),
			errB: c.ErrorRateBefore, errA: c.ErrorRateAfter, p99B: c.P99Before, p99A: c.P99After})
	}
	for _, k := range in.Diff.AddedEdges {
		edgeChange[k.ID()] = "added"
		r := changeRow{kind: "edge", id: k.ID(), change: "added", errB: nan, p99B: nan, errA: nan, p99A: nan}
		if e := edgeOf(in.Current, k); e != nil {
			r.errA, r.p99A, r.protocol = e.Stats.ErrorRate(), e.Stats.P99Ms(), e.Info.Protocol
		}
		rows = append(rows, r)
	}
	for _, k := range in.Diff.RemovedEdges {
		edgeChange[k.ID()] = "removed"
		r := changeRow{kind: "edge", id: k.ID(), change: "removed", errB: nan, p99B: nan, errA: nan, p99A: nan}
		if e := edgeOf(in.Baseline, k); e != nil {
			r.errB, r.p99B, r.protocol = e.Stats.ErrorRate(), e.Stats.P99Ms(), e.Info.Protocol
		}
		rows = append(rows, r)
	}
	for _, c := range in.Diff.ChangedEdges {
		edgeChange[c.ID] = "changed: " + strings.Join(c.Reasons, "; ")
		proto := c.ProtocolAfter
		if c.ProtocolChanged {
			proto = c.ProtocolBefore + " → " + c.ProtocolAfter
		} else if proto == "" {
			proto = c.ProtocolBefore
		}
		rows = append(rows, changeRow{kind: "edge", id: c.ID, change: "changed", reasons: strings.Join(c.Reasons, "; "),
			errB: c.ErrorRateBefore, errA: c.ErrorRateAfter, p99B: c.P99Before, p99A: c.P99After, protocol: proto})
	}
	slices.SortStableFunc(rows, func(a, b changeRow) int {
		return cmp.Or(strings.Compare(b.kind, a.kind), strings.Compare(a.id, b.id)) // "node" before "edge"
	})
	n := len(rows)
	kinds, ids, changes, reasons, protos := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	errB, errA, p99B, p99A := make([]*float64, n), make([]*float64, n), make([]*float64, n), make([]*float64, n)
	for i, r := range rows {
		kinds[i], ids[i], changes[i], reasons[i], protos[i] = r.kind, r.id, r.change, r.reasons, r.protocol
		errB[i], errA[i], p99B[i], p99A[i] = optional(r.errB), optional(r.errA), optional(r.p99B), optional(r.p99A)
	}
	table := Table("changes", refID, warnings,
		Column{Name: "kind", Display: "Kind", Values: kinds},
		Column{Name: "id", Display: "Node or edge", Values: ids},
		Column{Name: "change", Display: "Change", Values: changes},
		Column{Name: "reasons", Display: "Reasons", Values: reasons},
		Column{Name: "error_rate_before", Display: "Error rate before", Unit: "percentunit", Values: errB},
		Column{Name: "error_rate_after", Display: "Error rate after", Unit: "percentunit", Values: errA},
		Column{Name: "p99_before_ms", Display: "p99 before", Unit: "ms", Values: p99B},
		Column{Name: "p99_after_ms", Display: "p99 after", Unit: "ms", Values: p99A},
		Column{Name: "protocol", Display: "Protocol", Values: protos},
	)

	nodes, edges := NodeGraph(in.Union, links, warnings)
	nodes.RefID, edges.RefID = refID, refID
	paint := func(f *data.Frame, ids []string, change map[string]string, dashes *data.Field) {
		colors, detail, hi := make([]string, len(ids)), make([]string, len(ids)), make([]bool, len(ids))
		for i, id := range ids {
			c, ok := change[id]
			if !ok {
				c = "unchanged"
			}
			detail[i], hi[i] = c, ok
			switch {
			case c == "added":
				colors[i] = ChangeAddedColor
			case c == "removed":
				colors[i] = ChangeRemovedColor
				if dashes != nil {
					dashes.Set(i, removedDashes)
				}
			case ok:
				colors[i] = ChangeChangedColor
			default:
				colors[i] = ChangeUnchangedColor
			}
		}
		if _, k := f.FieldByName("color"); k >= 0 {
			f.Fields[k] = data.NewField("color", nil, colors)
		}
		f.Fields = append(f.Fields, data.NewField("highlighted", nil, hi),
			withConfig(data.NewField("detail__change", nil, detail), "Change", ""))
	}
	nodeIDs := make([]string, len(in.Union.Nodes))
	for i, n := range in.Union.Nodes {
		nodeIDs[i] = n.ID()
	}
	edgeIDs := make([]string, len(in.Union.Edges))
	for i, e := range in.Union.Edges {
		edgeIDs[i] = e.Key.ID()
	}
	dash, _ := edges.FieldByName("strokeDasharray")
	paint(nodes, nodeIDs, nodeChange, nil)
	paint(edges, edgeIDs, edgeChange, dash)
	return data.Frames{table, nodes, edges}
}

// Drift returns drift_summary (one row) and drift_edges (every declared or
// observed edge with its status: matched, undeclared or unused; by source,
// then target).
func Drift(r analysis.DriftResult, matched []model.EdgeKey, refID string, warnings []string) data.Frames {
	summary := Table("drift_summary", refID, warnings,
		Column{Name: "observed", Display: "Observed dependencies", Values: []int64{int64(r.Observed)}},
		Column{Name: "declared", Display: "Declared dependencies", Values: []int64{int64(r.Declared)}},
		Column{Name: "matched", Display: "Matched", Values: []int64{int64(r.Matched)}},
		Column{Name: "coverage", Display: "Coverage", Unit: "percentunit", Values: []float64{r.Coverage}},
		Column{Name: "still_seen", Display: "Still seen", Unit: "percentunit", Values: []float64{r.StillSeen}},
		Column{Name: "added_services", Display: "Services added", Values: []string{strings.Join(r.AddedServices, ", ")}},
		Column{Name: "removed_services", Display: "Services removed", Values: []string{strings.Join(r.RemovedServices, ", ")}},
		Column{Name: "summary", Display: "Summary", Values: []string{r.Summary}},
	)
	type row struct {
		k      model.EdgeKey
		status string
	}
	var rows []row
	for _, k := range r.Undeclared {
		rows = append(rows, row{k, "undeclared"})
	}
	for _, k := range r.Unused {
		rows = append(rows, row{k, "unused"})
	}
	for _, k := range matched {
		rows = append(rows, row{k, "matched"})
	}
	slices.SortFunc(rows, func(a, b row) int {
		return cmp.Or(strings.Compare(a.k.Source, b.k.Source), strings.Compare(a.k.Target, b.k.Target))
	})
	srcs, dsts, status := make([]string, len(rows)), make([]string, len(rows)), make([]string, len(rows))
	for i, r := range rows {
		srcs[i], dsts[i], status[i] = r.k.Source, r.k.Target, r.status
	}
	edges := Table("drift_edges", refID, nil,
		Column{Name: "source", Display: "Source", Values: srcs},
		Column{Name: "target", Display: "Target", Values: dsts},
		Column{Name: "status", Display: "Status", Values: status},
	)
	return data.Frames{summary, edges}
}

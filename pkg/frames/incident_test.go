package frames

import (
	"math"
	"strings"
	"testing"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"
	"github.com/grafana/grafana-plugin-sdk-go/experimental"

	"github.com/livemap/servicemap/pkg/analysis"
	"github.com/livemap/servicemap/pkg/model"
)

func frameNamed(t *testing.T, fs data.Frames, name string) *data.Frame {
	t.Helper()
	for _, f := range fs {
		if f.Name == name {
			return f
		}
	}
	t.Fatalf("no frame %q", name)
	return nil
}

func namesOf(fs data.Frames) string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Name)
	}
	return strings.Join(out, ",")
}

// checkoutIncident is what the analysis says of checkout on shop(): its
// caller frontend and the user upstream, the slow payments downstream.
func checkoutIncident() ImpactInput {
	return ImpactInput{
		Scope: analysis.ImpactScope{Service: "checkout", Health: model.HealthRed,
			Upstream:    []analysis.Dependent{{Service: "frontend", Kind: model.KindService, Hops: 1, Health: model.HealthGreen}},
			EntryPoints: []analysis.Dependent{{Service: "user", Kind: model.KindUser, Hops: 2}},
			Summary:     "1 upstream service depends on checkout, 0 degraded"},
		Blast: analysis.BlastRadiusResult{Service: "checkout", Reason: "no gateway data: blast radius in users unknown"},
		RootCause: analysis.RootCauseResult{Service: "checkout", Cause: analysis.CauseDownstream, Culprit: "payments",
			Verdict: "likely downstream: payments (via checkout → payments)", Path: []string{"checkout", "payments"},
			Edges: []analysis.EdgeEvidence{
				{Source: "checkout", Target: "payments", Calls: 450, ErrorRate: 0, P99Ms: 900, Health: model.HealthRed},
				{Source: "checkout", Target: "db", ErrorRate: math.NaN(), P99Ms: math.NaN()}, // wire only: no rates
			},
			Nodes: []analysis.NodeEvidence{{Service: "checkout"}, {Service: "payments"}}},
		Affected: []string{"checkout", "db", "frontend", "payments"},
		Recovery: []analysis.RecoveryStep{
			{Services: []string{"db", "payments"}, Label: "db", Wave: 1},
			{Services: []string{"checkout", "frontend"}, Cycle: true, Label: "cycle: checkout, frontend", Wave: 2},
		},
	}
}

func TestImpactFrames(t *testing.T) {
	fs := Impact(shop(), checkoutIncident(), Links{}, "A", []string{"stale"})
	if got := namesOf(fs); got != "nodes,edges,summary,dependents,root_cause,recovery_order" {
		t.Fatalf("frames %s", got)
	}
	for _, f := range fs {
		if f.RefID != "A" {
			t.Errorf("%s refId %q", f.Name, f.RefID)
		}
	}
	nodes, edges := fs[0], fs[1]
	// the node graph contract still holds on the impact view
	if nodes.Meta.PreferredVisualization != data.VisTypeNodeGraph || edges.Meta.PreferredVisualization != data.VisTypeNodeGraph {
		t.Error("impact graph frames do not prefer the node graph")
	}
	field(t, edges, "source")
	// every role, catalog (not involved) left out
	wantColumn(t, nodes, "id", "checkout", "db", "frontend", "payments", "user")
	wantColumn(t, nodes, "detail__impact", "target", "affected", "upstream dependent (1 hop)", "root-cause path: likely origin", "entry point (2 hops)")
	wantField(t, nodes, "detail__impact", data.FieldTypeString, "Role in the incident", "")
	wantField(t, nodes, "highlighted", data.FieldTypeBool, "", "")
	wantColumn(t, nodes, "highlighted", "true", "false", "false", "true", "false")
	// colour stays the health
	wantColumn(t, nodes, "color", "#F2495C", "#8e8e8e", "#73BF69", "#F2495C", "#8e8e8e")
	wantColumn(t, edges, "id", "checkout->db", "checkout->payments", "frontend->checkout", "user->frontend")
	// the root-cause evidence edges stand out
	wantColumn(t, edges, "highlighted", "true", "true", "false", "false")

	wantColumn(t, fs[2], "summary", "1 upstream service depends on checkout, 0 degraded")
	wantColumn(t, fs[2], "blast_radius", "no gateway data: blast radius in users unknown")
	wantColumn(t, fs[2], "cause", "downstream")
	wantColumn(t, fs[2], "culprit", "payments")
	if len(fs[2].Meta.Notices) != 1 {
		t.Errorf("summary notices %+v, want the warning", fs[2].Meta.Notices)
	}
	wantColumn(t, fs[3], "service", "frontend", "user")
	wantColumn(t, fs[3], "kind", "service", "user")
	wantColumn(t, fs[3], "hops", "1", "2")
	wantColumn(t, fs[3], "health", "green", "unknown")
	wantColumn(t, fs[4], "step", "1", "2")
	wantColumn(t, fs[4], "calls", "450", "0")
	wantColumn(t, fs[4], "error_rate", "0", "-")
	wantColumn(t, fs[4], "p99_ms", "900", "-")
	wantField(t, fs[4], "p99_ms", data.FieldTypeNullableFloat64, "p99 latency", "ms")
	wantColumn(t, fs[5], "step", "1", "2")
	wantColumn(t, fs[5], "wave", "1", "2")
	wantColumn(t, fs[5], "services", "db, payments", "checkout, frontend")
	wantColumn(t, fs[5], "cycle", "false", "true")
	wantColumn(t, fs[5], "label", "db", "cycle: checkout, frontend")
	for _, f := range fs[2:] {
		if f.Meta.PreferredVisualization != data.VisTypeTable {
			t.Errorf("%s prefers %q", f.Name, f.Meta.PreferredVisualization)
		}
	}
}

// Dependents mix upstream services and entry points by hops, then name;
// a known blast radius shows its summary.
func TestImpactTablesOrderAndBlastRadius(t *testing.T) {
	in := checkoutIncident()
	in.Scope.Upstream = []analysis.Dependent{{Service: "frontend", Hops: 1}, {Service: "bff", Hops: 2}}
	in.Scope.EntryPoints = []analysis.Dependent{{Service: "user", Hops: 2}, {Service: "ext:partner", Hops: 1}}
	in.Blast = analysis.BlastRadiusResult{Known: true, Summary: "1,200 users (30 % of entry traffic)", Reason: "ignored"}
	fs := Impact(shop(), in, Links{}, "A", nil)
	wantColumn(t, frameNamed(t, fs, "dependents"), "service", "ext:partner", "frontend", "bff", "user")
	wantColumn(t, frameNamed(t, fs, "summary"), "blast_radius", "1,200 users (30 % of entry traffic)")
}

// baseline and current of TestChangesFrames:
//
//	before: user → frontend → checkout (clean) → legacy
//	after:  user → frontend → checkout (10 % errors, gRPC now) → payments
func changesInput() ChangesInput {
	before := build(nil, call("user", "frontend", 900, 0, 40), call("frontend", "checkout", 900, 0, 120), call("checkout", "legacy", 90, 0, 30))
	grpc := call("frontend", "checkout", 900, 90, 120)
	grpc.Info.Protocol = "gRPC"
	after := build(nil, call("user", "frontend", 900, 0, 40), grpc, call("checkout", "payments", 90, 0, 300))
	union := []*model.Edge{call("user", "frontend", 900, 0, 40), grpc, call("checkout", "payments", 90, 0, 300), call("checkout", "legacy", 90, 0, 30)}
	fc := model.EdgeKey{Source: "frontend", Target: "checkout"}
	return ChangesInput{Baseline: before, Current: after, Union: build(nil, union...),
		Diff: analysis.GraphDiff{
			AddedNodes: []string{"payments"}, RemovedNodes: []string{"legacy"},
			AddedEdges:   []model.EdgeKey{{Source: "checkout", Target: "payments"}},
			RemovedEdges: []model.EdgeKey{{Source: "checkout", Target: "legacy"}},
			ChangedNodes: []analysis.Change{{ID: "checkout", ErrorRateBefore: 0, ErrorRateAfter: 0.1, P99Before: 120, P99After: 120,
				ErrorRateChanged: true, Reasons: []string{"error rate 0.0 % → 10.0 % (+10.0 pp)"}}},
			ChangedEdges: []analysis.Change{{ID: fc.ID(), Edge: fc, ErrorRateBefore: 0, ErrorRateAfter: 0.1, P99Before: 120, P99After: 120,
				ProtocolBefore: "HTTP", ProtocolAfter: "gRPC", ErrorRateChanged: true, ProtocolChanged: true,
				Reasons: []string{"error rate 0.0 % → 10.0 % (+10.0 pp)", "protocol HTTP → gRPC"}}},
		}}
}

func TestChangesFrames(t *testing.T) {
	fs := Changes(changesInput(), Links{}, "C", nil)
	experimental.CheckGoldenJSONResponse(t, "testdata", "changes", &backend.DataResponse{Frames: fs}, *update)
	if got := namesOf(fs); got != "changes,nodes,edges" {
		t.Fatalf("frames %s", got)
	}
	table, nodes, edges := fs[0], fs[1], fs[2]
	// nodes first, then edges, each by id
	wantColumn(t, table, "kind", "node", "node", "node", "edge", "edge", "edge")
	wantColumn(t, table, "id", "checkout", "legacy", "payments", "checkout->legacy", "checkout->payments", "frontend->checkout")
	wantColumn(t, table, "change", "changed", "removed", "added", "removed", "added", "changed")
	wantColumn(t, table, "reasons", "error rate 0.0 % → 10.0 % (+10.0 pp)", "", "", "", "",
		"error rate 0.0 % → 10.0 % (+10.0 pp); protocol HTTP → gRPC")
	// what was not there on one side is null, not zero
	wantColumn(t, table, "error_rate_before", "0", "0", "-", "0", "-", "0")
	wantColumn(t, table, "error_rate_after", "0.1", "-", "0", "-", "0", "0.1")
	wantColumn(t, table, "protocol", "", "", "", "HTTP", "HTTP", "HTTP → gRPC")
	wantField(t, table, "error_rate_after", data.FieldTypeNullableFloat64, "Error rate after", "percentunit")
	wantField(t, table, "p99_after_ms", data.FieldTypeNullableFloat64, "p99 after", "ms")
	p99 := column(t, table, "p99_after_ms")
	if p99[1] != "-" || p99[2] == "-" {
		t.Errorf("p99 after %q: removed legacy must be null, added payments set", p99)
	}

	// the graph of both ranges, coloured by change
	wantColumn(t, nodes, "id", "checkout", "frontend", "legacy", "payments", "user")
	wantColumn(t, nodes, "color", ChangeChangedColor, ChangeUnchangedColor, ChangeRemovedColor, ChangeAddedColor, ChangeUnchangedColor)
	wantColumn(t, nodes, "detail__change", "changed: error rate 0.0 % → 10.0 % (+10.0 pp)", "unchanged", "removed", "added", "unchanged")
	wantColumn(t, nodes, "highlighted", "true", "false", "true", "true", "false")
	// the health is still on the card, and the colour field keeps its place
	wantColumn(t, nodes, "detail__health", "red", "green", "green", "green", "unknown")
	if _, i := nodes.FieldByName("color"); i != 7 {
		t.Errorf("color moved to position %d: %s", i, fieldNames(nodes))
	}
	wantColumn(t, edges, "id", "checkout->legacy", "checkout->payments", "frontend->checkout", "user->frontend")
	wantColumn(t, edges, "color", ChangeRemovedColor, ChangeAddedColor, ChangeChangedColor, ChangeUnchangedColor)
	wantColumn(t, edges, "strokeDasharray", "6 3", "", "", "")
	wantColumn(t, edges, "highlighted", "true", "true", "true", "false")
	field(t, edges, "source")
	for _, f := range []*data.Frame{nodes, edges} {
		if f.RefID != "C" || f.Meta.PreferredVisualization != data.VisTypeNodeGraph {
			t.Errorf("%s: refId %q, meta %+v", f.Name, f.RefID, f.Meta)
		}
	}
}

func TestChangesOfNothing(t *testing.T) {
	g := build(nil, call("a", "b", 900, 0, 10))
	fs := Changes(ChangesInput{Baseline: g, Current: g, Union: g}, Links{}, "A", nil)
	if fs[0].Rows() != 0 {
		t.Errorf("changes of an unchanged map: %q", column(t, fs[0], "id"))
	}
	wantColumn(t, fs[1], "detail__change", "unchanged", "unchanged")
	wantColumn(t, fs[2], "highlighted", "false")
}

func TestDriftFrames(t *testing.T) {
	r := analysis.DriftResult{
		Undeclared: []model.EdgeKey{{Source: "frontend", Target: "catalog"}},
		Unused:     []model.EdgeKey{{Source: "frontend", Target: "search"}},
		Matched:    2, Observed: 3, Declared: 3, Coverage: 2.0 / 3, StillSeen: 2.0 / 3,
		AddedServices: []string{"catalog", "reviews"}, RemovedServices: []string{"search"},
		Summary: "the declaration contains 67 % of observed dependencies",
	}
	matched := []model.EdgeKey{{Source: "frontend", Target: "checkout"}, {Source: "checkout", Target: "payments"}}
	fs := Drift(r, matched, "D", []string{"stale"})
	if got := namesOf(fs); got != "drift_summary,drift_edges" {
		t.Fatalf("frames %s", got)
	}
	sum, edges := fs[0], fs[1]
	wantColumn(t, sum, "observed", "3")
	wantColumn(t, sum, "declared", "3")
	wantColumn(t, sum, "matched", "2")
	wantColumn(t, sum, "coverage", "0.6667")
	wantColumn(t, sum, "still_seen", "0.6667")
	wantColumn(t, sum, "added_services", "catalog, reviews")
	wantColumn(t, sum, "removed_services", "search")
	wantField(t, sum, "coverage", data.FieldTypeFloat64, "Coverage", "percentunit")
	wantField(t, sum, "observed", data.FieldTypeInt64, "Observed dependencies", "")
	if len(sum.Meta.Notices) != 1 || len(edges.Meta.Notices) != 0 {
		t.Errorf("notices on the summary only: %+v / %+v", sum.Meta.Notices, edges.Meta.Notices)
	}
	// by source, then target
	wantColumn(t, edges, "source", "checkout", "frontend", "frontend", "frontend")
	wantColumn(t, edges, "target", "payments", "catalog", "checkout", "search")
	wantColumn(t, edges, "status", "matched", "undeclared", "matched", "unused")
	if edges.RefID != "D" || sum.RefID != "D" {
		t.Errorf("refIds %q %q", sum.RefID, edges.RefID)
	}
}

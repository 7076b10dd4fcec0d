package analysis

import (
	"reflect"
	"testing"

	"github.com/livemap/servicemap/pkg/model"
)

func withProtocol(e *model.Edge, p string) *model.Edge { e.Info.Protocol = p; return e }

func TestDiff(t *testing.T) {
	baseline := build(
		ok("a", "b"),                   // error rate jumps
		ok("b", "c"),                   // p99 jumps
		ok("c", "d"),                   // protocol changes
		call("d", "e", 1000, 0, 100),   // exactly 1 pp more errors: not "beyond"
		call("e", "f", 1000, 0, 100),   // p99 +20 %: below the threshold
		withProtocol(ok("f", "g"), ""), // protocol learnt: not a change
		ok("x", "y"),                   // gone
	)
	current := build(
		call("a", "b", 1000, 15, 50),
		call("b", "c", 1000, 0, 80),
		withProtocol(ok("c", "d"), "gRPC"),
		call("d", "e", 1000, 10, 100),
		call("e", "f", 1000, 0, 120),
		withProtocol(ok("f", "g"), "gRPC"),
		ok("a", "z"), // new
	)
	d := Diff(baseline, current, DiffThresholds{})
	if !reflect.DeepEqual(d.AddedNodes, []string{"z"}) || !reflect.DeepEqual(d.RemovedNodes, []string{"x", "y"}) {
		t.Errorf("nodes +%v -%v", d.AddedNodes, d.RemovedNodes)
	}
	if !reflect.DeepEqual(d.AddedEdges, []model.EdgeKey{{Source: "a", Target: "z"}}) ||
		!reflect.DeepEqual(d.RemovedEdges, []model.EdgeKey{{Source: "x", Target: "y"}}) {
		t.Errorf("edges +%v -%v", d.AddedEdges, d.RemovedEdges)
	}
	var got []string
	for _, c := range d.ChangedEdges {
		got = append(got, c.ID)
	}
	if want := []string{"a->b", "b->c", "c->d"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("changed edges %v, want %v", got, want)
	}
	ab, bc, cd := d.ChangedEdges[0], d.ChangedEdges[1], d.ChangedEdges[2]
	if !ab.ErrorRateChanged || ab.P99Changed || ab.ProtocolChanged || ab.ErrorRateBefore != 0 || ab.ErrorRateAfter != 0.015 ||
		ab.HealthBefore != model.HealthGreen || ab.HealthAfter != model.HealthRed ||
		!reflect.DeepEqual(ab.Reasons, []string{"error rate 0.0 % → 1.5 % (+1.5 pp)"}) {
		t.Errorf("a->b %+v", ab)
	}
	if bc.ErrorRateChanged || !bc.P99Changed || !reflect.DeepEqual(bc.Reasons, []string{"p99 50 ms → 81 ms (+62 %)"}) { // the sketch reads within 1 %
		t.Errorf("b->c %+v", bc)
	}
	if !cd.ProtocolChanged || cd.ProtocolBefore != "HTTP" || cd.ProtocolAfter != "gRPC" || len(cd.Reasons) != 1 {
		t.Errorf("c->d %+v", cd)
	}
	// Nodes change by what they serve: b (errors) and c (p99); e is the
	// callee of d->e whose 1 pp is not beyond the threshold.
	got = nil
	for _, c := range d.ChangedNodes {
		got = append(got, c.ID)
	}
	if want := []string{"b", "c"}; !reflect.DeepEqual(got, want) {
		t.Errorf("changed nodes %v, want %v", got, want)
	}

	// Looser thresholds: only the protocol change is left.
	d = Diff(baseline, current, DiffThresholds{ErrorRatePoints: 0.02, P99Relative: 0.7})
	if len(d.ChangedEdges) != 1 || d.ChangedEdges[0].ID != "c->d" || len(d.ChangedNodes) != 0 {
		t.Errorf("loose thresholds: %+v", d.ChangedEdges)
	}
	if !Diff(current, current, DiffThresholds{}).Empty() {
		t.Error("a graph differs from itself")
	}
	if d := Diff(nil, current, DiffThresholds{}); len(d.AddedNodes) != len(current.Nodes) || len(d.AddedEdges) != len(current.Edges) {
		t.Errorf("from nothing: %+v", d)
	}
}

package analysis

import (
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/livemap/servicemap/pkg/model"
)

func TestRootCauseFollowsUnhealthyChain(t *testing.T) {
	g := build(
		ok("user", "web"),
		fail("web", "checkout"), ok("web", "catalog"),
		warn("checkout", "payment"), // yellow counts
		failN("payment", "bank", 300),
		ok("bank", "ledger"), // healthy below the culprit: not followed
	)
	r := RootCause(g, "web")
	if r.Cause != CauseDownstream || r.Culprit != "bank" ||
		r.Verdict != "likely downstream: bank (via web → checkout → payment → bank)" {
		t.Fatalf("%+v", r)
	}
	if !reflect.DeepEqual(r.Path, []string{"web", "checkout", "payment", "bank"}) {
		t.Errorf("path %v", r.Path)
	}
	wantEdges := []struct {
		src, dst string
		rate     float64
		h        model.Health
	}{{"web", "checkout", 0.1, model.HealthRed}, {"checkout", "payment", 0.009, model.HealthYellow}, {"payment", "bank", 0.3, model.HealthRed}}
	if len(r.Edges) != len(wantEdges) {
		t.Fatalf("edges %+v", r.Edges)
	}
	for k, w := range wantEdges {
		e := r.Edges[k]
		if e.Source != w.src || e.Target != w.dst || e.ErrorRate != w.rate || e.Health != w.h || e.Calls != 1000 {
			t.Errorf("edge %d = %+v, want %+v", k, e, w)
		}
		if math.Abs(e.P99Ms-50) > 0.5 { // the sketch is within 1 %
			t.Errorf("edge %d p99 = %v", k, e.P99Ms)
		}
	}
	var nodes []string
	var health []model.Health
	for _, n := range r.Nodes {
		nodes, health = append(nodes, n.Service), append(health, n.Health)
	}
	if !reflect.DeepEqual(nodes, r.Path) ||
		!reflect.DeepEqual(health, []model.Health{model.HealthGreen, model.HealthRed, model.HealthYellow, model.HealthRed}) {
		t.Errorf("nodes %v %v", nodes, health)
	}
}

func TestRootCauseTieBreaks(t *testing.T) {
	for _, tc := range []struct {
		name    string
		edges   []*model.Edge
		verdict string
	}{
		{"deepest path first", []*model.Edge{
			failN("api", "a", 900), fail("api", "b"), fail("b", "c"),
		}, "likely downstream: c (via api → b → c)"},
		{"a shortcut does not hide the deeper callee", []*model.Edge{
			fail("api", "b"), fail("api", "c"), fail("b", "c"),
		}, "likely downstream: c (via api → b → c)"},
		{"then worst error rate", []*model.Edge{
			failN("api", "x", 50), failN("api", "y", 200), failN("api", "z", 100),
		}, "likely downstream: y (via api → y)"},
		{"then name", []*model.Edge{
			fail("api", "n2"), fail("api", "n1"), fail("api", "n3"),
		}, "likely downstream: n1 (via api → n1)"},
		{"diamond", []*model.Edge{
			fail("api", "left"), failN("api", "right", 500), fail("left", "db"), fail("right", "db"),
		}, "likely downstream: db (via api → right → db)"},
		{"cycle ends", []*model.Edge{
			fail("api", "b"), fail("b", "c"), fail("c", "api"),
		}, "likely downstream: c (via api → b → c)"},
		{"cycle with a way out", []*model.Edge{
			fail("api", "b"), fail("b", "c"), fail("c", "b"), fail("c", "d"),
		}, "likely downstream: d (via api → b → c → d)"},
		{"self loop", []*model.Edge{
			fail("api", "api"), fail("api", "db"),
		}, "likely downstream: db (via api → db)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := RootCause(build(tc.edges...), "api")
			if r.Verdict != tc.verdict {
				t.Fatalf("verdict %q, want %q", r.Verdict, tc.verdict)
			}
		})
	}
}

func TestRootCauseOtherVerdicts(t *testing.T) {
	g := build(
		fail("user", "api"), ok("api", "db"), // api is red, its calls are fine
		fail("user", "web"), ok("web", "search"), ok("ext:bot", "search"), // search green, web red
		ok("user", "shop"), ok("shop", "cart"),
	)
	wantHealth(t, g, map[string]model.Health{"api": model.HealthRed, "web": model.HealthRed, "search": model.HealthGreen})

	r := RootCause(g, "api")
	if r.Cause != CauseSelf || r.Culprit != "api" || r.Verdict != "likely in this service" ||
		len(r.Nodes) != 1 || r.Nodes[0].Health != model.HealthRed || r.Nodes[0].ErrorRate != 0.1 {
		t.Errorf("self: %+v", r)
	}
	r = RootCause(g, "search")
	if r.Cause != CauseUpstream || r.Verdict != "upstream callers only" || r.Culprit != "" ||
		len(r.Nodes) != 1 || r.Nodes[0].Service != "web" || len(r.Edges) != 1 || r.Edges[0].Source != "web" {
		t.Errorf("upstream: %+v", r)
	}
	if r := RootCause(g, "db"); r.Cause != CauseUpstream { // its only caller, api, is red
		t.Errorf("db: %+v", r)
	}
	for _, s := range []string{"cart", "shop"} {
		if r := RootCause(g, s); r.Cause != CauseHealthy || r.Verdict != "healthy" || r.Path != nil {
			t.Errorf("%s: %+v", s, r)
		}
	}
	r = RootCause(g, "nowhere")
	if r.Cause != CauseUnknownService || !strings.Contains(r.Verdict, `"nowhere"`) {
		t.Errorf("unknown: %+v", r)
	}
}

package analysis

import (
	"bufio"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/livemap/servicemap/pkg/model"
)

func TestDriftSmall(t *testing.T) {
	g := build(ok("user", "web"), ok("web", "api"), ok("api", "db"), ok("api", "cache"), ok("ext:stripe", "hooks"))
	r := Drift(keys("web", "api", "api", "db", "api", "old", "web", "db"), g)
	want := DriftResult{
		Undeclared: keys("api", "cache", "ext:stripe", "hooks"),
		Unused:     keys("api", "old", "web", "db"),
		Matched:    2, Observed: 4, Declared: 4, Coverage: 0.5, StillSeen: 0.5,
		AddedServices:   []string{"cache", "ext:stripe", "hooks"}, // not the user node
		RemovedServices: []string{"old"},
		Changed:         keys("web", "db"),
		Summary: "the declaration contains 50 % of observed dependencies, 50 % of declared dependencies are still seen; " +
			"3 services added, 1 removed, 1 dependency changed",
	}
	if !reflect.DeepEqual(r, want) {
		t.Fatalf("got  %+v\nwant %+v", r, want)
	}
	// A service declared without dependencies counts only through Declared.
	d := &Declared{Services: []string{"api", "lonely", "web"}, Edges: keys("web", "api")}
	if got := d.Drift(g).RemovedServices; !reflect.DeepEqual(got, []string{"lonely"}) {
		t.Errorf("removed %v", got)
	}
	if r := Drift(nil, &model.Graph{}); r.Coverage != 0 || r.StillSeen != 0 || r.Observed != 0 {
		t.Errorf("empty: %+v", r)
	}
}

// readObserved builds a graph from "caller -> callee" lines.
func readObserved(t *testing.T, path string) *model.Graph {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var edges []*model.Edge
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		src, dst, found := strings.Cut(line, "->")
		if !found {
			t.Fatalf("%s: bad line %q", path, line)
		}
		edges = append(edges, ok(strings.TrimSpace(src), strings.TrimSpace(dst)))
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return build(edges...)
}

// The diagram drawn 18 months ago against what the map sees now: about 40 %
// accurate, 12 services added since, 3 removed, 27 dependencies changed.
func TestDriftOfARottenDiagram(t *testing.T) {
	text, err := os.ReadFile("testdata/rotten/declared.yaml")
	if err != nil {
		t.Fatal(err)
	}
	d, err := ParseDeclared(string(text))
	if err != nil {
		t.Fatal(err)
	}
	g := readObserved(t, "testdata/rotten/observed.txt")
	r := d.Drift(g)
	if r.Declared != 40 || r.Observed != 40 || r.Matched != 16 {
		t.Errorf("declared %d, observed %d, matched %d", r.Declared, r.Observed, r.Matched)
	}
	if r.Coverage != 0.4 || r.StillSeen != 0.4 {
		t.Errorf("accuracy %v / %v, want 0.4 / 0.4", r.Coverage, r.StillSeen)
	}
	wantAdded := []string{"audit-log", "currency", "feature-flags", "fraud-detection", "geo-ip", "kafka",
		"loyalty", "pricing", "ratelimiter", "session-cache", "tax", "webhooks"}
	if !reflect.DeepEqual(r.AddedServices, wantAdded) {
		t.Errorf("added %v", r.AddedServices)
	}
	if want := []string{"batch-reports", "legacy-auth", "soap-bridge"}; !reflect.DeepEqual(r.RemovedServices, want) {
		t.Errorf("removed %v", r.RemovedServices)
	}
	if len(r.Changed) != 27 || len(r.Undeclared) != 24 || len(r.Unused) != 24 {
		t.Errorf("changed %d, undeclared %d, unused %d", len(r.Changed), len(r.Undeclared), len(r.Unused))
	}
	newDeps, dropped := 0, 0
	for _, k := range r.Changed {
		if edgeIn(g, k) {
			newDeps++
		} else {
			dropped++
		}
	}
	if newDeps != 12 || dropped != 15 {
		t.Errorf("changed: %d new, %d dropped; want 12 and 15", newDeps, dropped)
	}
	want := "the declaration contains 40 % of observed dependencies, 40 % of declared dependencies are still seen; " +
		"12 services added, 3 removed, 27 dependencies changed"
	if r.Summary != want {
		t.Errorf("summary %q", r.Summary)
	}
	// The edges alone give the same answer: every declared service has an edge.
	if e := Drift(d.Edges, g); !reflect.DeepEqual(e, r) {
		t.Errorf("Drift(edges) differs from Declared.Drift")
	}
}

func edgeIn(g *model.Graph, k model.EdgeKey) bool {
	for _, e := range g.Edges {
		if e.Key == k {
			return true
		}
	}
	return false
}

package analysis

import (
	"reflect"
	"strings"
	"testing"

	"github.com/livemap/servicemap/pkg/model"
)

// A diamond with two entry points: four services upstream of
// payment-service, three of them degraded.
func diamond() *model.Graph {
	return build(
		fail("user", "frontend"),
		ok("ext:partner", "mobile-bff"),
		fail("frontend", "checkout"),
		fail("mobile-bff", "checkout"),
		warn("frontend", "subscriptions"),
		ok("checkout", "payment-service"),
		ok("subscriptions", "payment-service"),
		ok("payment-service", "bank"),
		ok("other", "unrelated"), // a disconnected part
	)
}

func TestImpactDiamond(t *testing.T) {
	g := diamond()
	wantHealth(t, g, map[string]model.Health{
		"frontend": model.HealthRed, "checkout": model.HealthRed,
		"subscriptions": model.HealthYellow, "mobile-bff": model.HealthGreen,
	})
	s, err := Impact(g, "payment-service")
	if err != nil {
		t.Fatal(err)
	}
	want := []Dependent{
		{"checkout", model.KindService, 1, model.HealthRed},
		{"subscriptions", model.KindService, 1, model.HealthYellow},
		{"frontend", model.KindService, 2, model.HealthRed},
		{"mobile-bff", model.KindService, 2, model.HealthGreen},
	}
	if !reflect.DeepEqual(s.Upstream, want) {
		t.Errorf("upstream = %+v\nwant %+v", s.Upstream, want)
	}
	wantEntries := []Dependent{
		{"ext:partner", model.KindExternal, 3, model.HealthUnknown},
		{"user", model.KindUser, 3, model.HealthUnknown},
	}
	if !reflect.DeepEqual(s.EntryPoints, wantEntries) {
		t.Errorf("entry points = %+v\nwant %+v", s.EntryPoints, wantEntries)
	}
	if s.Degraded != 3 || s.Summary != "4 upstream services depend on payment-service, 3 degraded" {
		t.Errorf("degraded %d, summary %q", s.Degraded, s.Summary)
	}
	if s.Health != model.HealthGreen {
		t.Errorf("health = %v", s.Health)
	}
}

func TestImpactSummaries(t *testing.T) {
	g := build(ok("user", "web"), ok("web", "api"), ok("api", "db"))
	for _, tc := range []struct{ service, summary string }{
		{"db", "2 upstream services depend on db, 0 degraded"},
		{"api", "1 upstream service depends on api, 0 degraded"},
		{"web", "no upstream service depends on web"}, // only the user node calls it
		{"user", "no upstream service depends on user"},
	} {
		s, err := Impact(g, tc.service)
		if err != nil {
			t.Fatal(err)
		}
		if s.Summary != tc.summary {
			t.Errorf("%s: %q, want %q", tc.service, s.Summary, tc.summary)
		}
	}
	s, _ := Impact(g, "web")
	if got := ids(s.EntryPoints); !reflect.DeepEqual(got, []string{"user"}) {
		t.Errorf("entry points of web = %v", got)
	}
}

func TestImpactCycleTakesShortestHops(t *testing.T) {
	// a → b → c → a, and d → c: upstream of a is c (1), b and d (2).
	g := build(ok("a", "b"), ok("b", "c"), ok("c", "a"), ok("d", "c"))
	s, err := Impact(g, "a")
	if err != nil {
		t.Fatal(err)
	}
	want := []Dependent{
		{"c", model.KindService, 1, model.HealthGreen},
		{"b", model.KindService, 2, model.HealthGreen},
		{"d", model.KindService, 2, model.HealthUnknown}, // nobody calls d
	}
	if !reflect.DeepEqual(s.Upstream, want) {
		t.Errorf("upstream = %+v", s.Upstream)
	}
}

func TestImpactUnknownService(t *testing.T) {
	_, err := Impact(diamond(), "nope-service")
	if err == nil || !strings.Contains(err.Error(), `"nope-service"`) {
		t.Fatalf("err = %v, want one naming nope-service", err)
	}
	if _, err := Impact(nil, "x"); err == nil {
		t.Fatal("nil graph: no error")
	}
}

// ids returns the service names of dependents.
func ids(deps []Dependent) []string {
	out := make([]string, len(deps))
	for k, d := range deps {
		out[k] = d.Service
	}
	return out
}

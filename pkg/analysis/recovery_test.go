package analysis

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/livemap/servicemap/pkg/model"
)

func labels(steps []RecoveryStep) []string {
	var out []string
	for _, s := range steps {
		out = append(out, fmt.Sprintf("%d %s", s.Wave, s.Label))
	}
	return out
}

func TestRecoveryOrder(t *testing.T) {
	for _, tc := range []struct {
		name     string
		edges    []*model.Edge
		affected []string
		want     []string
	}{
		{"chain", []*model.Edge{ok("web", "checkout"), ok("checkout", "payment"), ok("payment", "bank")},
			[]string{"web", "checkout", "payment", "bank"},
			[]string{"1 bank", "2 payment", "3 checkout", "4 web"}},
		{"diamond", []*model.Edge{ok("a", "c"), ok("a", "b"), ok("b", "d"), ok("c", "d")},
			[]string{"a", "b", "c", "d"},
			[]string{"1 d", "2 b", "2 c", "3 a"}},
		{"cycle collapsed, independent ones by name", []*model.Edge{
			ok("a", "b"), ok("b", "c"), ok("c", "b"), ok("c", "d"), ok("e", "f")},
			[]string{"e", "d", "c", "b", "a"},
			[]string{"1 d", "1 e", "2 cycle: b, c", "3 a"}},
		{"only the affected subgraph", []*model.Edge{ok("a", "x"), ok("x", "b"), ok("b", "a2")},
			[]string{"a", "b"},
			[]string{"1 a", "1 b"}},
		{"self loop is no cycle, duplicates ignored", []*model.Edge{ok("a", "a"), ok("a", "b")},
			[]string{"a", "b", "a"},
			[]string{"1 b", "2 a"}},
		{"two cycles", []*model.Edge{
			ok("p", "q"), ok("q", "p"), ok("q", "r"), ok("r", "s"), ok("s", "t"), ok("t", "r")},
			[]string{"p", "q", "r", "s", "t"},
			[]string{"1 cycle: r, s, t", "2 cycle: p, q"}},
		{"nothing affected", []*model.Edge{ok("a", "b")}, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			steps, err := RecoveryOrder(build(tc.edges...), tc.affected)
			if err != nil {
				t.Fatal(err)
			}
			if got := labels(steps); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestRecoveryOrderCycleStep(t *testing.T) {
	steps, _ := RecoveryOrder(build(ok("b", "a"), ok("a", "b")), []string{"b", "a"})
	want := []RecoveryStep{{Services: []string{"a", "b"}, Cycle: true, Label: "cycle: a, b", Wave: 1}}
	if !reflect.DeepEqual(steps, want) {
		t.Fatalf("%+v", steps)
	}
}

func TestRecoveryOrderUnknownService(t *testing.T) {
	_, err := RecoveryOrder(build(ok("a", "b")), []string{"a", "ghost"})
	if err == nil || !strings.Contains(err.Error(), `"ghost"`) {
		t.Fatalf("err = %v", err)
	}
}

// A ring and a chain of 10,000 services: no recursion to overflow.
func TestRecoveryOrderLongRingAndChain(t *testing.T) {
	const n = 10000
	var edges []*model.Edge
	var names []string
	for i := range n {
		names = append(names, fmt.Sprintf("ring-%05d", i), fmt.Sprintf("chain-%05d", i))
		edges = append(edges, ok(fmt.Sprintf("ring-%05d", i), fmt.Sprintf("ring-%05d", (i+1)%n)))
		if i+1 < n {
			edges = append(edges, ok(fmt.Sprintf("chain-%05d", i), fmt.Sprintf("chain-%05d", i+1)))
		}
	}
	g := build(edges...)
	steps, err := RecoveryOrder(g, names)
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) != n+1 || steps[0].Label != "chain-09999" || !steps[1].Cycle || len(steps[1].Services) != n ||
		steps[1].Wave != 1 || steps[n].Label != "chain-00000" || steps[n].Wave != n {
		t.Fatalf("%d steps; first %q, second cycle %v (%d services), last %q wave %d",
			len(steps), steps[0].Label, steps[1].Cycle, len(steps[1].Services), steps[n].Label, steps[n].Wave)
	}
	// RootCause along a 10,000-long unhealthy chain is iterative too.
	var bad []*model.Edge
	for i := range n - 1 {
		bad = append(bad, fail(fmt.Sprintf("s%05d", i), fmt.Sprintf("s%05d", i+1)))
	}
	if r := RootCause(build(bad...), "s00000"); r.Culprit != "s09999" || len(r.Path) != n {
		t.Fatalf("culprit %q, path of %d", r.Culprit, len(r.Path))
	}
}

func TestAffectedSet(t *testing.T) {
	g := build(
		fail("user", "web"), ok("web", "checkout"), ok("admin", "checkout"),
		fail("checkout", "payment"), fail("payment", "bank"), ok("bank", "ledger"),
		ok("payment", "audit"), ok("other", "thing"),
	)
	got, err := AffectedSet(g, "checkout")
	if err != nil {
		t.Fatal(err)
	}
	// Upstream admin and web, the unhealthy path down to bank; not user,
	// not healthy callees.
	if want := []string{"admin", "bank", "checkout", "payment", "web"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	steps, err := RecoveryOrder(g, got)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"1 bank", "2 payment", "3 checkout", "4 admin", "4 web"}; !reflect.DeepEqual(labels(steps), want) {
		t.Fatalf("order %q", labels(steps))
	}
	if _, err := AffectedSet(g, "ghost"); err == nil {
		t.Fatal("no error for unknown service")
	}
}

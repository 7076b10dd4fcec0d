package analysis

import (
	"fmt"
	"maps"
	"reflect"
	"strings"
	"testing"

	"github.com/axiomhq/hyperloglog"

	"github.com/livemap/servicemap/pkg/model"
)

// exact is a distinct counter with no error, so the tests can assert exact
// numbers; its method set is the one *hyperloglog.Sketch has.
type exact map[string]bool

func (e exact) Estimate() uint64 { return uint64(len(e)) }
func (e exact) Clone() exact     { return maps.Clone(e) }
func (e exact) Merge(o exact) error {
	maps.Copy(e, o)
	return nil
}

func clients(names ...string) exact {
	e := exact{}
	for _, n := range names {
		e[n] = true
	}
	return e
}

type gateway[S DistinctCounter[S]] struct {
	entries map[string]S
	ok      bool
}

func (g gateway[S]) EntryUsers() (map[string]S, bool) { return g.entries, g.ok }

// Three entry points: web and mobile reach payment, admin does not.
func entryGraph() *model.Graph {
	return build(
		ok("user", "web"), ok("user", "mobile"), ok("ext:partner", "admin"),
		ok("web", "checkout"), ok("mobile", "checkout"), ok("checkout", "payment"),
		ok("admin", "reports"),
	)
}

func TestBlastRadiusMergesNotAdds(t *testing.T) {
	gw := gateway[exact]{ok: true, entries: map[string]exact{
		"web":    clients("ann", "bob", "cid"),
		"mobile": clients("bob", "dan"), // bob uses both: one client
		"admin":  clients("eve", "ann"),
	}}
	r := BlastRadius(entryGraph(), "payment", gw)
	want := BlastRadiusResult{
		Service: "payment", Known: true, Entries: []string{"mobile", "web"},
		Users: 4, Total: 5, Share: 0.8,
		Summary: "4 distinct external clients (80.0 % of all entry clients) reach payment through 2 entry points",
	}
	if !reflect.DeepEqual(r, want) {
		t.Fatalf("got  %+v\nwant %+v", r, want)
	}
	// The source's sketches are not touched by merging.
	if len(gw.entries["web"]) != 3 || len(gw.entries["mobile"]) != 2 {
		t.Fatalf("entry sketches were mutated: %v", gw.entries)
	}
}

func TestBlastRadiusOfAnEntryPointCountsItself(t *testing.T) {
	gw := gateway[exact]{ok: true, entries: map[string]exact{
		"web": clients("ann"), "mobile": clients("bob"), "admin": clients("cid"),
	}}
	r := BlastRadius(entryGraph(), "admin", gw)
	if !r.Known || r.Users != 1 || r.Total != 3 || !reflect.DeepEqual(r.Entries, []string{"admin"}) {
		t.Fatalf("%+v", r)
	}
	if r.Summary != "1 distinct external client (33.3 % of all entry clients) reaches admin through 1 entry point" {
		t.Errorf("summary %q", r.Summary)
	}
	// A service no entry point reaches.
	g := build(ok("user", "web"), ok("cron", "batch"))
	r = BlastRadius(g, "batch", gateway[exact]{ok: true, entries: map[string]exact{"web": clients("ann")}})
	if !r.Known || r.Users != 0 || r.Total != 1 || r.Share != 0 || r.Entries != nil {
		t.Fatalf("%+v", r)
	}
}

func TestBlastRadiusWithoutGatewayDataSaysSo(t *testing.T) {
	for name, users := range map[string]UserCounts[exact]{
		"nil source":  nil,
		"not ok":      gateway[exact]{ok: false, entries: map[string]exact{"web": clients("ann")}},
		"ok but none": gateway[exact]{ok: true},
	} {
		r := BlastRadius(entryGraph(), "payment", users)
		want := BlastRadiusResult{Service: "payment", Reason: "no gateway data: blast radius in users unknown"}
		if !reflect.DeepEqual(r, want) {
			t.Errorf("%s: %+v", name, r)
		}
	}
}

func TestBlastRadiusUnknownService(t *testing.T) {
	r := BlastRadius(entryGraph(), "ghost", gateway[exact]{ok: true, entries: map[string]exact{"web": clients("a")}})
	if r.Known || !strings.Contains(r.Reason, `"ghost"`) || r.Users != 0 {
		t.Fatalf("%+v", r)
	}
}

// *hyperloglog.Sketch is a DistinctCounter as it is.
func TestBlastRadiusWithHyperLogLog(t *testing.T) {
	sketch := func(from, to int) *hyperloglog.Sketch {
		s := hyperloglog.New14()
		for i := from; i < to; i++ {
			s.Insert(fmt.Appendf(nil, "client-%d", i))
		}
		return s
	}
	gw := gateway[*hyperloglog.Sketch]{ok: true, entries: map[string]*hyperloglog.Sketch{
		"web":    sketch(0, 6000),
		"mobile": sketch(4000, 10000), // 2,000 shared with web
		"admin":  sketch(10000, 12000),
	}}
	r := BlastRadius(entryGraph(), "payment", gw)
	near := func(got uint64, want float64) bool { return float64(got) > 0.97*want && float64(got) < 1.03*want }
	if !r.Known || !near(r.Users, 10000) || !near(r.Total, 12000) || r.Share < 0.8 || r.Share > 0.87 {
		t.Fatalf("%+v", r)
	}
	if est := gw.entries["web"].Estimate(); !near(est, 6000) {
		t.Fatalf("web sketch changed by merging: %d", est)
	}
	// Sketches of different precision do not merge: no number is invented.
	gw.entries["admin"] = hyperloglog.New16()
	if r := BlastRadius(entryGraph(), "payment", gw); r.Known || !strings.Contains(r.Reason, "do not merge") {
		t.Fatalf("%+v", r)
	}
}

package frames

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"
	"github.com/grafana/grafana-plugin-sdk-go/experimental"

	"github.com/livemap/servicemap/pkg/model"
)

// shop is a small map with every kind of fact a card can show:
//
//	user → frontend        900 calls (1 req/s), 40 ms
//	frontend → checkout   1800 calls, 10 % failed, 120 ms   (red)
//	frontend → catalog     900 calls, 15 ms, circuit breaker, owner team
//	checkout → payments    450 calls, 900 ms                (red: p99 > 500)
//	checkout → db          seen on the wire only: 12 connections, no calls
func shop() *model.Graph {
	catalog := call("frontend", "catalog", 900, 0, 15)
	catalog.Info.CircuitBreaker, catalog.Info.OwnerTeam = "consecutive5xx=5", "catalog-team"
	db := &model.Edge{Key: model.EdgeKey{Source: "checkout", Target: "db"}, Sources: model.SourceNetwork,
		Info: model.EdgeInfo{Protocol: "TCP"}, FirstSeen: t0, LastSeen: t1.Add(-time.Minute)}
	db.Stats.Connections = 12
	return build(map[string]model.NodeInfo{
		"user": {Kind: model.KindUser},
		"checkout": {Namespace: "shop", Team: "checkout-team", Tier: "critical", LastDeploy: t0.Add(-time.Hour),
			Attributes: map[string]string{"version": "1.4.2", "region": "eu"}},
		"payments": {Title: "Payments API", Team: "payments-team"},
		"db":       {Kind: model.KindDatabase},
	},
		call("user", "frontend", 900, 0, 40),
		call("frontend", "checkout", 1800, 180, 120),
		catalog,
		call("checkout", "payments", 450, 0, 900),
		db,
	)
}

var selfAndTempo = Links{SelfUID: "servicemap-uid", SelfName: "Service map", TraceType: "tempo", TraceDatasourceUID: "tempo-uid"}

func TestNodeGraphFrameContract(t *testing.T) {
	nodes, edges := NodeGraph(shop(), selfAndTempo, []string{"network source stale for 2m0s"})
	experimental.CheckGoldenJSONResponse(t, "testdata", "nodegraph", &backend.DataResponse{Frames: data.Frames{nodes, edges}}, *update)

	for _, f := range []*data.Frame{nodes, edges} {
		if f.Meta == nil || f.Meta.PreferredVisualization != data.VisTypeNodeGraph {
			t.Errorf("%s: meta %+v, want preferredVisualisationType nodeGraph", f.Name, f.Meta)
		}
		if f.Meta == nil || len(f.Meta.Notices) != 1 || f.Meta.Notices[0].Text != "network source stale for 2m0s" ||
			f.Meta.Notices[0].Severity != data.NoticeSeverityWarning {
			t.Errorf("%s: notices %+v, want the stale source as one warning", f.Name, f.Meta)
		}
		// detail__ and arc__ fields need a label: the panel shows config.displayName
		for _, fld := range f.Fields {
			if (strings.HasPrefix(fld.Name, "detail__") || strings.HasPrefix(fld.Name, "arc__")) &&
				(fld.Config == nil || fld.Config.DisplayName == "") {
				t.Errorf("%s.%s has no display name", f.Name, fld.Name)
			}
			if fld.Len() != f.Rows() {
				t.Errorf("%s.%s has %d values for %d rows", f.Name, fld.Name, fld.Len(), f.Rows())
			}
		}
	}
	if nodes.Name != "nodes" || edges.Name != "edges" {
		t.Errorf("frame names %q, %q", nodes.Name, edges.Name)
	}
	// the panel takes any frame with a "source" field for the edges
	if fld, _ := nodes.FieldByName("source"); fld != nil {
		t.Error("the nodes frame has a source field: the panel would read it as edges")
	}

	// nodes: id first, then the panel's display fields
	wantField(t, nodes, "id", data.FieldTypeString, "", "")
	if nodes.Fields[0].Name != "id" || edges.Fields[0].Name != "id" {
		t.Errorf("id is not the first field: %s / %s", fieldNames(nodes), fieldNames(edges))
	}
	wantField(t, nodes, "title", data.FieldTypeString, "", "")
	wantField(t, nodes, "subtitle", data.FieldTypeString, "", "")
	wantField(t, nodes, "mainstat", data.FieldTypeFloat64, "Requests/s served", "reqps")
	wantField(t, nodes, "secondarystat", data.FieldTypeNullableFloat64, "p99 latency", "ms")
	wantField(t, nodes, "color", data.FieldTypeString, "", "")
	wantField(t, nodes, "detail__error_rate", data.FieldTypeNullableFloat64, "Error rate", "percentunit")
	wantColumn(t, nodes, "id", "catalog", "checkout", "db", "frontend", "payments", "user")
	wantColumn(t, nodes, "title", "catalog", "checkout", "db", "frontend", "Payments API", "user")
	wantColumn(t, nodes, "subtitle", "service", "checkout-team / critical", "database", "service", "payments-team", "user")
	wantColumn(t, nodes, "mainstat", "1", "2", "0", "1", "0.5", "0")
	wantColumn(t, nodes, "color", "#73BF69", "#F2495C", "#8e8e8e", "#73BF69", "#F2495C", "#8e8e8e")
	wantColumn(t, nodes, "detail__health", "green", "red", "unknown", "green", "red", "unknown")
	wantColumn(t, nodes, "detail__kind", "service", "service", "database", "service", "service", "user")
	wantColumn(t, nodes, "detail__error_rate", "0", "0.1", "-", "0", "0", "-")
	wantColumn(t, nodes, "detail__last_deploy", "", "2026-03-01T11:00:00Z", "", "", "", "")
	wantColumn(t, nodes, "detail__sources", "traces", "traces,network", "network", "traces", "traces", "traces")
	// node attributes become detail__<key>, sorted, labelled by the key
	if got := fieldNames(nodes); !strings.HasSuffix(got, ",detail__region,detail__version") {
		t.Errorf("attribute columns: %s", got)
	}
	wantField(t, nodes, "detail__version", data.FieldTypeString, "version", "")
	wantColumn(t, nodes, "detail__version", "", "1.4.2", "", "", "", "")
	// p99 from the latency sketch: within 1 % of the calls' latency; none without calls
	p99 := column(t, nodes, "secondarystat")
	for i, want := range []float64{15, 120, math.NaN(), 40, 900, math.NaN()} {
		v, _ := field(t, nodes, "secondarystat").NullableFloatAt(i)
		switch {
		case math.IsNaN(want) && v != nil:
			t.Errorf("node %d p99 %v, want none", i, *v)
		case !math.IsNaN(want) && (v == nil || math.Abs(*v-want) > want/100):
			t.Errorf("node %d p99 %s, want %v within 1 %%", i, p99[i], want)
		}
	}

	// arcs: success + errors is the whole circle for every node with calls,
	// and no arc at all (both 0) for a node that served nothing
	ok, bad := field(t, nodes, "arc__success"), field(t, nodes, "arc__errors")
	for i := 0; i < nodes.Rows(); i++ {
		s, e := ok.At(i).(float64), bad.At(i).(float64)
		served := column(t, nodes, "detail__error_rate")[i] != "-"
		if served && math.Abs(s+e-1) > 1e-12 || !served && s+e != 0 {
			t.Errorf("node %s arcs %v + %v", nodes.Fields[0].At(i), s, e)
		}
	}
	wantColumn(t, nodes, "arc__errors", "0", "0.1", "0", "0", "0", "0")
	for name, colour := range map[string]string{"arc__success": "green", "arc__errors": "red"} {
		c := field(t, nodes, name).Config
		if c == nil || c.Color["mode"] != "fixed" || c.Color["fixedColor"] != colour {
			t.Errorf("%s colour %+v, want fixed %s", name, c, colour)
		}
	}

	// edges
	wantField(t, edges, "id", data.FieldTypeString, "", "")
	wantField(t, edges, "source", data.FieldTypeString, "", "")
	wantField(t, edges, "target", data.FieldTypeString, "", "")
	wantField(t, edges, "mainstat", data.FieldTypeFloat64, "Requests/s", "reqps")
	wantField(t, edges, "secondarystat", data.FieldTypeNullableFloat64, "Error rate", "percentunit")
	wantField(t, edges, "thickness", data.FieldTypeFloat64, "", "")
	wantField(t, edges, "detail__last_seen", data.FieldTypeTime, "Last seen", "")
	wantColumn(t, edges, "id", "checkout->db", "checkout->payments", "frontend->catalog", "frontend->checkout", "user->frontend")
	wantColumn(t, edges, "source", "checkout", "checkout", "frontend", "frontend", "user")
	wantColumn(t, edges, "target", "db", "payments", "catalog", "checkout", "frontend")
	wantColumn(t, edges, "mainstat", "0", "0.5", "1", "2", "1")
	wantColumn(t, edges, "secondarystat", "-", "0", "0", "0.1", "0")
	wantColumn(t, edges, "color", "#8e8e8e", "#F2495C", "#73BF69", "#F2495C", "#73BF69")
	// 1 + 2·log10(1 + req/s), at most 8
	wantColumn(t, edges, "thickness", "1", "1.352", "1.602", "1.954", "1.602")
	// wire-only evidence is dashed
	wantColumn(t, edges, "strokeDasharray", "4 2", "", "", "", "")
	wantColumn(t, edges, "detail__protocol", "TCP", "HTTP", "HTTP", "HTTP", "HTTP")
	wantColumn(t, edges, "detail__last_seen", "2026-03-01T12:14:00Z", "2026-03-01T12:14:00Z", "2026-03-01T12:14:00Z", "2026-03-01T12:14:00Z", "2026-03-01T12:14:00Z")
	// optional card facts: only those some edge has
	wantColumn(t, edges, "detail__connections", "12", "0", "0", "0", "0")
	wantColumn(t, edges, "detail__circuit_breaker", "", "", "consecutive5xx=5", "", "")
	wantColumn(t, edges, "detail__owner_team", "", "", "catalog-team", "", "")
	for _, absent := range []string{"detail__retry_policy", "detail__tier", "detail__last_deploy"} {
		if fld, _ := edges.FieldByName(absent); fld != nil {
			t.Errorf("edges carry %s though no edge has it", absent)
		}
	}
}

func TestNodeGraphOfAnEmptyMap(t *testing.T) {
	nodes, edges := NodeGraph(build(nil), Links{}, nil)
	if nodes.Rows() != 0 || edges.Rows() != 0 {
		t.Fatalf("%d nodes, %d edges", nodes.Rows(), edges.Rows())
	}
	// the contract holds with no rows: the panel still finds its fields
	for _, name := range []string{"id", "title", "mainstat", "secondarystat", "arc__success", "arc__errors", "color"} {
		field(t, nodes, name)
	}
	for _, name := range []string{"id", "source", "target", "mainstat", "secondarystat"} {
		field(t, edges, name)
	}
	if len(nodes.Meta.Notices) != 0 {
		t.Errorf("notices without warnings: %+v", nodes.Meta.Notices)
	}
	if l := field(t, nodes, "id").Config.Links; len(l) != 0 {
		t.Errorf("links without a self UID or trace target: %+v", l)
	}
}

// A very busy edge is drawn no thicker than 8.
func TestEdgeThicknessIsCapped(t *testing.T) {
	_, edges := NodeGraph(build(nil, call("a", "b", 900_000_000, 0, 1)), Links{}, nil)
	wantColumn(t, edges, "thickness", "8")
	wantColumn(t, edges, "mainstat", "1e+06")
}

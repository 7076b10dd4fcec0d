package traces

import (
	"fmt"
	"testing"
	"time"

	"github.com/livemap/servicemap/pkg/model"
	"github.com/livemap/servicemap/pkg/store"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func span(trace, id, parent, service string, kind Kind, startMs int, durMs float64, attrs Attributes) *Span {
	return &Span{TraceID: trace, SpanID: id, ParentSpanID: parent, Service: service, Kind: kind,
		Start: t0.Add(time.Duration(startMs) * time.Millisecond), DurationMs: durMs, Attrs: attrs}
}

// calls returns "source->target" → calls, errors after feeding spans and
// settling everything.
func pairAll(t *testing.T, spans ...*Span) (map[string][2]uint64, *Pairer, *store.Store) {
	t.Helper()
	st := store.New(store.Options{Now: func() time.Time { return t0.Add(time.Hour) }})
	p := NewPairer(30 * time.Second)
	b := store.NewBatch(model.SourceTraces)
	for _, s := range spans {
		p.Add(s, b)
	}
	p.Expire(t0.Add(time.Hour), b)
	st.Apply(b)
	edges, _ := st.Snapshot(t0.Add(-time.Hour), t0.Add(time.Hour), model.AllSources)
	out := map[string][2]uint64{}
	for _, e := range edges {
		out[e.Key.ID()] = [2]uint64{e.Stats.Calls, e.Stats.Errors}
	}
	return out, p, st
}

func expectEdges(t *testing.T, got map[string][2]uint64, want map[string][2]uint64) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("edges\n got %v\nwant %v", got, want)
	}
}

func TestClientServerPairsAndRootGetsUser(t *testing.T) {
	grpc := Attributes{RPCSystem: "grpc"}
	got, p, st := pairAll(t,
		span("t1", "a1", "", "frontend", KindServer, 0, 100, Attributes{HTTPMethod: "GET"}),
		span("t1", "a2", "a1", "frontend", KindInternal, 1, 90, Attributes{}),
		span("t1", "a3", "a2", "frontend", KindClient, 2, 80, grpc),
		span("t1", "b1", "a3", "checkout", KindServer, 5, 70, grpc),
	)
	expectEdges(t, got, map[string][2]uint64{"frontend->checkout": {1, 0}, "user->frontend": {1, 0}})
	if p.Unpaired != 0 || p.ClientsWithoutPeer != 0 {
		t.Errorf("unpaired %d, clients without peer %d", p.Unpaired, p.ClientsWithoutPeer)
	}
	edges, _ := st.Snapshot(t0.Add(-time.Hour), t0.Add(time.Hour), model.AllSources)
	for _, e := range edges {
		if e.Key.Target == "checkout" {
			if e.Info.Protocol != "gRPC" {
				t.Errorf("protocol %q, want gRPC", e.Info.Protocol)
			}
			if p99 := e.Stats.P99Ms(); p99 < 79 || p99 > 81 { // the client span's 80 ms
				t.Errorf("latency %v, want the client's 80 ms", p99)
			}
		}
	}
}

func TestErrorOnEitherSideFailsTheCall(t *testing.T) {
	c := span("t1", "c", "", "a", KindClient, 0, 10, Attributes{})
	s := span("t1", "s", "c", "b", KindServer, 1, 8, Attributes{})
	s.Failed = true
	got, _, _ := pairAll(t, c, s)
	expectEdges(t, got, map[string][2]uint64{"a->b": {1, 1}})
}

func TestServiceChangeMakesEdgeWithoutKinds(t *testing.T) {
	got, _, _ := pairAll(t,
		span("t2", "1", "", "gateway", KindUnspecified, 0, 50, Attributes{}),
		span("t2", "2", "1", "gateway", KindUnspecified, 1, 40, Attributes{}),
		span("t2", "3", "2", "orders", KindUnspecified, 2, 30, Attributes{}),
		span("t2", "4", "3", "orders", KindUnspecified, 3, 20, Attributes{}),
		span("t2", "5", "4", "stock", KindInternal, 4, 10, Attributes{}),
	)
	expectEdges(t, got, map[string][2]uint64{"gateway->orders": {1, 0}, "orders->stock": {1, 0}, "user->gateway": {1, 0}})
}

func TestVirtualNodesAndSameNamedDatabasesStayApart(t *testing.T) {
	got, _, st := pairAll(t,
		span("t3", "1", "", "shop", KindServer, 0, 50, Attributes{}),
		span("t3", "2", "1", "shop", KindClient, 1, 5, Attributes{DBSystem: "postgresql", DBNamespace: "orders", ServerAddress: "pg.shop", ServerPort: "5432"}),
		span("t3", "3", "1", "shop", KindClient, 2, 5, Attributes{PeerService: "stripe", HTTPMethod: "POST"}),
		span("t3", "4", "1", "shop", KindProducer, 3, 1, Attributes{MessagingSystem: "kafka", MessagingDest: "orders"}),
		span("t3", "5", "1", "shop", KindClient, 4, 1, Attributes{ServerAddress: "api.example.com", ServerPort: "443"}),
		span("t4", "1", "", "billing", KindServer, 0, 50, Attributes{}),
		span("t4", "2", "1", "billing", KindClient, 1, 5, Attributes{DBSystem: "postgresql", DBNamespace: "orders", ServerAddress: "pg.billing", ServerPort: "5432"}),
		span("t4", "3", "1", "billing", KindClient, 2, 5, Attributes{DBSystem: "redis", ServiceNamespace: ""}),
		span("t4", "4", "1", "billing", KindClient, 3, 5, Attributes{}), // no peer attributes: no edge
	)
	expectEdges(t, got, map[string][2]uint64{
		"billing->postgresql:orders@pg.billing:5432": {1, 0},
		"billing->redis:redis@billing":               {1, 0},
		"shop->api.example.com:443":                  {1, 0},
		"shop->kafka:orders":                         {1, 0},
		"shop->postgresql:orders@pg.shop:5432":       {1, 0},
		"shop->stripe":                               {1, 0},
		"user->billing":                              {1, 0},
		"user->shop":                                 {1, 0},
	})
	nodes := st.Nodes()
	if n := nodes["postgresql:orders@pg.shop:5432"]; n.Kind != model.KindDatabase || n.Title != "orders (postgresql)" {
		t.Errorf("database node %+v", n)
	}
	if n := nodes["kafka:orders"]; n.Kind != model.KindMessaging {
		t.Errorf("messaging node %+v", n)
	}
}

func TestChildBeforeParentAndOrphans(t *testing.T) {
	got, p, _ := pairAll(t,
		span("t5", "s", "c", "b", KindServer, 1, 8, Attributes{}),       // arrives before its parent
		span("t5", "c", "", "a", KindClient, 0, 10, Attributes{}),       // parent, root client
		span("t6", "x", "missing", "b", KindServer, 0, 5, Attributes{}), // parent never arrives
	)
	expectEdges(t, got, map[string][2]uint64{"a->b": {1, 0}})
	if p.Unpaired != 1 {
		t.Errorf("unpaired %d, want 1", p.Unpaired)
	}
	if p.Pending() != 0 {
		t.Errorf("%d spans still pending after expiry", p.Pending())
	}
}

func TestClientWaitsForLateChildUntilExpiry(t *testing.T) {
	st := store.New(store.Options{Now: func() time.Time { return t0.Add(time.Hour) }})
	p := NewPairer(30 * time.Second)
	b := store.NewBatch(model.SourceTraces)
	p.Add(span("t7", "c", "", "a", KindClient, 0, 10, Attributes{PeerService: "b"}), b)
	p.Expire(t0.Add(20*time.Second), b) // still within the wait: no virtual edge yet
	if b.Len() != 0 {
		t.Fatalf("client span settled before its wait ended")
	}
	p.Add(span("t7", "s", "c", "b", KindServer, 25_000, 5, Attributes{}), b)
	p.Expire(t0.Add(time.Hour), b)
	st.Apply(b)
	edges, _ := st.Snapshot(t0.Add(-time.Hour), t0.Add(time.Hour), model.AllSources)
	if len(edges) != 1 || edges[0].Stats.Calls != 1 {
		t.Fatalf("want exactly one a->b call, got %+v", edges)
	}
}

func TestParseKindAndStatus(t *testing.T) {
	for in, want := range map[string]Kind{"SPAN_KIND_SERVER": KindServer, "client": KindClient, "3": KindClient,
		"Producer": KindProducer, "CONSUMER": KindConsumer, "INTERNAL": KindInternal, "": KindUnspecified, "weird": KindUnspecified} {
		if got := ParseKind(in); got != want {
			t.Errorf("ParseKind(%q) = %v, want %v", in, got, want)
		}
	}
	for in, want := range map[string]bool{"ERROR": true, "STATUS_CODE_ERROR": true, "Error": true, "2": true, "OK": false, "": false, "UNSET": false} {
		if got := ParseFailed(in); got != want {
			t.Errorf("ParseFailed(%q) = %v", in, got)
		}
	}
}

package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/axiomhq/hyperloglog"
	"github.com/grafana/grafana-plugin-sdk-go/backend/log"

	"github.com/livemap/servicemap/pkg/agent/api"
	"github.com/livemap/servicemap/pkg/config"
	"github.com/livemap/servicemap/pkg/model"
	"github.com/livemap/servicemap/pkg/sketch"
	"github.com/livemap/servicemap/pkg/store"
)

// scriptedAgent serves GET /v1/gateway from a list of closed buckets as the
// contract in pkg/agent/api/gateway.go describes it. It is a stand-in for
// the faults the real agent does not produce on demand (a gap of exactly N
// buckets, a bucket with corrupt sketch bytes, malformed JSON, a page size
// of 2) and for exact client sets per bucket. The real agent behind a real
// nginx, exactly once across polls and a restart, over TLS, is tested end
// to end in pkg/plugin/gateway_agent_test.go.
type scriptedAgent struct {
	mu       sync.Mutex
	epoch    string
	buckets  []api.GatewayBucket // ascending Seq
	oldest   uint64              // lowest Seq still held (0: the first bucket's)
	pageSize int
	garbage  bool // answer with malformed JSON
	token    string
	requests []string
}

func (a *scriptedAgent) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.requests = append(a.requests, r.URL.RawQuery)
	if r.URL.Path != "/v1/gateway" {
		http.NotFound(w, r)
		return
	}
	if a.token != "" && r.Header.Get("Authorization") != "Bearer "+a.token {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	if a.garbage {
		fmt.Fprint(w, `{"schemaVersion":1,"epoch":"e1","buckets":[{"seq":`)
		return
	}
	after, _ := strconv.ParseUint(r.URL.Query().Get("after"), 10, 64)
	rep := api.GatewayReport{SchemaVersion: 1, Node: "node-1", Epoch: a.epoch, Buckets: []api.GatewayBucket{}}
	oldest := a.oldest
	if oldest == 0 && len(a.buckets) > 0 {
		oldest = a.buckets[0].Seq
	}
	rep.Oldest = oldest
	if len(a.buckets) > 0 {
		rep.LastSeq = a.buckets[len(a.buckets)-1].Seq
	}
	if after+1 < oldest {
		rep.Gap = oldest - after - 1
	}
	for _, b := range a.buckets {
		if b.Seq <= after || b.Seq < oldest {
			continue
		}
		if len(rep.Buckets) == a.pageSize {
			rep.More = true
			break
		}
		rep.Buckets = append(rep.Buckets, b)
	}
	rep.Lines = api.LineCounts{Parsed: 1000, Bad: 3, LastBad: "bad status: \"x\""}
	_ = json.NewEncoder(w).Encode(rep)
}

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// bucket makes a closed minute: calls requests at latency ms, errors of
// them failed, from clients client-<c> for c in [lo, hi).
func bucket(t *testing.T, seq uint64, minute int, caller, service string, calls, errors uint64, ms float64, lo, hi int) api.GatewayBucket {
	var l sketch.Latency
	l.AddN(ms, calls)
	lat, _ := l.MarshalBinary()
	hll := hyperloglog.New14()
	for c := lo; c < hi; c++ {
		hll.Insert([]byte(fmt.Sprintf("client-%d", c)))
	}
	cl, err := hll.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return api.GatewayBucket{Seq: seq, Minute: t0.Add(time.Duration(minute) * time.Minute), Caller: caller, Service: service, Protocol: "http",
		Calls: calls, Errors: errors, LatencySumMs: ms * float64(calls), Latency: lat, Clients: cl}
}

func newAgentSource(t *testing.T, bases ...string) (*Source, *store.Store) {
	t.Helper()
	raw, _ := json.Marshal(map[string]any{"gateway": map[string]any{"enabled": true, "agents": bases}})
	s, err := config.Parse(raw, map[string]string{"agentToken": "tok"})
	if err != nil {
		t.Fatal(err)
	}
	st := store.New(store.Options{Now: func() time.Time { return t0.Add(time.Hour) }})
	src, err := New(s, st, log.DefaultLogger, Options{})
	if err != nil {
		t.Fatal(err)
	}
	src.SetClock(func() time.Time { return t0.Add(time.Hour) })
	return src, st
}

func callsOn(st *store.Store) map[string][2]uint64 {
	edges, _ := st.Snapshot(t0.Add(-time.Hour), t0.Add(2*time.Hour), model.AllSources)
	out := map[string][2]uint64{}
	for _, e := range edges {
		out[e.Key.Source+"->"+e.Key.Target] = [2]uint64{e.Stats.Calls, e.Stats.Errors}
	}
	return out
}

func TestAgentBucketsAppliedExactlyOnce(t *testing.T) {
	ag := &scriptedAgent{epoch: "e1", pageSize: 2, token: "tok"}
	for i := 0; i < 5; i++ { // 5 minutes of user → shop, 10 calls each, 1 failing
		ag.buckets = append(ag.buckets, bucket(t, uint64(i+1), i, "user", "shop.prod.svc.cluster.local:8080", 10, 1, 20, i*10, i*10+15))
	}
	srv := httptest.NewServer(ag)
	defer srv.Close()
	src, st := newAgentSource(t, srv.URL)

	if err := src.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	// page size 2: More is followed within one refresh
	if got := callsOn(st)["user->shop"]; got != [2]uint64{50, 5} {
		t.Fatalf("after the first refresh user->shop %v, want 50 calls 5 errors", got)
	}
	if len(ag.requests) != 3 || ag.requests[0] != "after=0&epoch=" || !strings.HasPrefix(ag.requests[2], "after=4&") {
		t.Errorf("requests %v, want after=0, 2, 4", ag.requests)
	}
	// polling again adds nothing; a new minute is added once
	if err := src.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	ag.mu.Lock()
	ag.buckets = append(ag.buckets, bucket(t, 6, 5, "partner", "shop:80", 4, 0, 20, 100, 104))
	ag.mu.Unlock()
	for range 2 {
		if err := src.Refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	got := callsOn(st)
	if got["user->shop"] != [2]uint64{50, 5} || got["partner->shop"] != [2]uint64{4, 0} {
		t.Fatalf("after more refreshes %v", got)
	}
	// clients: 0..54 from user (overlapping minutes merge) plus 100..103
	if e := st.EntryClients(t0, t0.Add(time.Hour))["shop"].Estimate(); e != 59 {
		t.Errorf("shop clients %d, want 59", e)
	}
	edges, nodes := st.Snapshot(t0, t0.Add(time.Hour), model.AllSources)
	for _, e := range edges {
		if e.Info.Protocol != "HTTP" || e.Sources != model.SourceGateway {
			t.Errorf("%v: protocol %q sources %v", e.Key, e.Info.Protocol, e.Sources)
		}
		if e.Key.Target == "shop" && e.Key.Source == "user" && (e.Stats.Latency.Count() != 50 || e.Stats.LatencySumMs != 1000) {
			t.Errorf("latency: %d timed, sum %v", e.Stats.Latency.Count(), e.Stats.LatencySumMs)
		}
	}
	if nodes["user"].Kind != model.KindUser || nodes["partner"].Kind != model.KindExternal {
		t.Errorf("caller kinds: user %q partner %q", nodes["user"].Kind, nodes["partner"].Kind)
	}
	sts := src.AgentStatuses()
	if len(sts) != 1 || sts[0].LastSeq != 6 || sts[0].Buckets != 6 || sts[0].Gaps != 0 || sts[0].Bad != 0 || !sts[0].Reached {
		t.Errorf("agent status %+v", sts)
	}
	if d := st.Statuses()[0].Detail; !strings.Contains(d, "last seq 6 of epoch e1") || !strings.Contains(d, "3 bad lines") || !strings.Contains(d, "1 of 1 agents reached, 0 without a gateway log") {
		t.Errorf("status detail %q", d)
	}
}

func TestAgentRestartGapAndBadBucket(t *testing.T) {
	ag := &scriptedAgent{epoch: "e1", pageSize: 100}
	ag.buckets = []api.GatewayBucket{bucket(t, 1, 0, "user", "shop", 10, 0, 5, 0, 10), bucket(t, 2, 1, "user", "shop", 10, 0, 5, 0, 10)}
	srv := httptest.NewServer(ag)
	defer srv.Close()
	src, st := newAgentSource(t, srv.URL)
	if err := src.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The agent restarts (new epoch, Seq from 1) and has closed three minutes;
	// the plugin, remembering seq 2 of e1, must start again from 0 and take all three.
	ag.mu.Lock()
	ag.epoch = "e2"
	ag.buckets = []api.GatewayBucket{bucket(t, 1, 2, "user", "shop", 1, 0, 5, 0, 1), bucket(t, 2, 3, "user", "shop", 1, 0, 5, 0, 1), bucket(t, 3, 4, "user", "shop", 1, 0, 5, 0, 1)}
	ag.mu.Unlock()
	if err := src.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := callsOn(st)["user->shop"]; got != [2]uint64{23, 0} {
		t.Fatalf("after the restart %v, want 23 calls", got)
	}
	// Seqs 4..7 close; 4 and 5 are dropped by the agent before we ask (a gap
	// of 2), 6 has a corrupt latency sketch, 7 a corrupt clients sketch and
	// 8 is good: 8 is applied, 6 and 7 are counted bad by name, nothing hidden.
	ag.mu.Lock()
	b6 := bucket(t, 6, 7, "user", "shop", 7, 0, 5, 0, 1)
	b6.Latency = []byte{1, 0, 2, 3, 9, 9}
	b7 := bucket(t, 7, 8, "user", "cart", 7, 0, 5, 0, 1)
	b7.Clients = []byte("not a sketch")
	ag.buckets = []api.GatewayBucket{b6, b7, bucket(t, 8, 9, "user", "shop", 2, 1, 5, 0, 1)}
	ag.oldest = 6
	ag.mu.Unlock()
	if err := src.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := callsOn(st)
	if got["user->shop"] != [2]uint64{25, 1} || got["user->cart"] != [2]uint64{} {
		t.Fatalf("after gap and bad buckets %v", got)
	}
	s := src.AgentStatuses()[0]
	if s.Epoch != "e2" || s.LastSeq != 8 || s.Gaps != 2 || s.Bad != 2 || !strings.Contains(s.LastBad, "seq 7 (user → cart") || !strings.Contains(s.LastBad, "clients sketch") {
		t.Errorf("agent status %+v", s)
	}
	if d := st.Statuses()[0].Detail; !strings.Contains(d, "2 lost in gaps") || !strings.Contains(d, "2 bad buckets skipped") {
		t.Errorf("status detail %q", d)
	}
}

func TestAgentFailuresAreNamedAndStale(t *testing.T) {
	bad := &scriptedAgent{garbage: true}
	srvBad := httptest.NewServer(bad)
	defer srvBad.Close()
	good := &scriptedAgent{epoch: "g", pageSize: 10, buckets: []api.GatewayBucket{bucket(t, 1, 0, "user", "api", 3, 0, 5, 0, 3)}}
	srvGood := httptest.NewServer(good)
	defer srvGood.Close()
	unauth := &scriptedAgent{epoch: "u", token: "other"}
	srvUnauth := httptest.NewServer(unauth)
	defer srvUnauth.Close()
	src, st := newAgentSource(t, srvBad.URL, srvGood.URL, srvUnauth.URL)
	err := src.Refresh(context.Background())
	if err == nil || !strings.Contains(err.Error(), "agent "+srvBad.URL+": decoding gateway report") ||
		!strings.Contains(err.Error(), "agent "+srvUnauth.URL+": GET /v1/gateway: 401") {
		t.Fatalf("error %v", err)
	}
	if got := callsOn(st)["user->api"]; got != [2]uint64{3, 0} {
		t.Errorf("the good agent's data is applied all the same: %v", got)
	}
	status := st.Statuses()[0]
	if !status.Stale() || !strings.Contains(status.Notice(), "gateway source is stale") {
		t.Errorf("status %+v", status)
	}
	if err := src.Check(context.Background()); err == nil || !strings.Contains(err.Error(), srvBad.URL) {
		t.Errorf("check: %v", err)
	}
}

func TestServiceIDAndCallers(t *testing.T) {
	for in, want := range map[string]string{
		"shop":                            "shop",
		"shop:8080":                       "shop",
		"shop.prod.svc":                   "shop",
		"shop.prod.svc.cluster.local":     "shop",
		"shop.prod.svc.cluster.local.:80": "shop",
		"http://shop.prod.svc:8080/api":   "shop",
		"10.0.0.5:8080":                   "10.0.0.5",
		"10.0.0.9:80, 10.0.0.5:8080":      "10.0.0.5",
		"[fd00::5]:8080":                  "fd00::5",
		"api.example.com:443":             "api.example.com",
		"  checkout  ":                    "checkout",
		"":                                "",
	} {
		if got := ServiceID(in); got != want {
			t.Errorf("ServiceID(%q) = %q, want %q", in, got, want)
		}
	}
	c := NewCallers([]config.ExternalCIDR{{Name: "partner", CIDR: "203.0.113.0/24"}, {Name: "office", CIDR: "10.9.0.0/16"}})
	for _, tc := range []struct {
		named, addr, want string
		kind              model.NodeKind
	}{
		{"", "203.0.113.9", "partner", model.KindExternal},
		{"", "203.0.113.9:51000", "partner", model.KindExternal},
		{"", "10.9.1.1", "office", model.KindExternal},
		{"", "198.51.100.1", "user", model.KindUser},
		{"", "not an address", "user", model.KindUser},
		{"mobile-app", "203.0.113.9", "mobile-app", model.KindExternal},
		{"user", "203.0.113.9", "user", model.KindUser},
	} {
		id, kind := c.Caller(tc.named, tc.addr)
		if id != tc.want || kind != tc.kind {
			t.Errorf("Caller(%q, %q) = %s %s, want %s %s", tc.named, tc.addr, id, kind, tc.want, tc.kind)
		}
	}
	g0, g14 := 0, 14
	for _, tc := range []struct {
		status int
		grpc   *int
		want   bool
	}{{200, nil, false}, {404, nil, false}, {499, nil, false}, {500, nil, true}, {503, nil, true}, {200, &g0, false}, {200, &g14, true}} {
		if IsError(tc.status, tc.grpc) != tc.want {
			t.Errorf("IsError(%d, %v) != %v", tc.status, tc.grpc, tc.want)
		}
	}
}

// Discovered agents (the DaemonSet on every node) that tail no access log
// answer 404: normal, not a failure. A listed agent must serve the endpoint.
func TestAgentWithoutGatewayLog(t *testing.T) {
	none := httptest.NewServer(http.NotFoundHandler())
	defer none.Close()
	good := httptest.NewServer(&scriptedAgent{epoch: "g", pageSize: 10, buckets: []api.GatewayBucket{bucket(t, 1, 0, "user", "api", 3, 0, 5, 0, 3)}})
	defer good.Close()

	raw, _ := json.Marshal(map[string]any{"gateway": map[string]any{"enabled": true}, "kubernetes": map[string]any{"enabled": true}})
	s, err := config.Parse(raw, nil)
	if err != nil {
		t.Fatal(err)
	}
	st := store.New(store.Options{Now: func() time.Time { return t0.Add(time.Hour) }})
	src, err := New(s, st, log.DefaultLogger, Options{Agents: func() []string { return []string{none.URL, good.URL} }})
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Refresh(context.Background()); err != nil {
		t.Fatalf("a discovered agent without a gateway log is not a failure: %v", err)
	}
	if d := st.Statuses()[0].Detail; !strings.Contains(d, "agent "+none.URL+": no gateway log (404)") || !strings.Contains(d, "1 of 2 agents reached, 1 without a gateway log") {
		t.Errorf("detail %q", d)
	}
	if err := src.Check(context.Background()); err != nil {
		t.Errorf("check: %v", err)
	}
	if got := callsOn(st)["user->api"]; got != [2]uint64{3, 0} {
		t.Errorf("calls %v", got)
	}

	listed, _ := newAgentSource(t, none.URL)
	if err := listed.Refresh(context.Background()); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("a listed agent answering 404: %v", err)
	}
}

// A clients sketch that decodes but has another precision would not merge
// with the store's: the bucket is refused by name, nothing of it counted.
func TestAgentBucketOfOtherPrecision(t *testing.T) {
	b1 := bucket(t, 1, 0, "user", "cart", 5, 0, 5, 0, 1)
	p16 := hyperloglog.New16()
	p16.Insert([]byte("someone"))
	b1.Clients, _ = p16.MarshalBinary()
	srv := httptest.NewServer(&scriptedAgent{epoch: "e", pageSize: 10, buckets: []api.GatewayBucket{b1, bucket(t, 2, 1, "user", "shop", 2, 0, 5, 0, 2)}})
	defer srv.Close()
	src, st := newAgentSource(t, srv.URL)
	if err := src.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := callsOn(st)
	if _, ok := got["user->cart"]; ok || got["user->shop"] != [2]uint64{2, 0} {
		t.Fatalf("calls %v", got)
	}
	if s := src.AgentStatuses()[0]; s.Bad != 1 || s.LastSeq != 2 || !strings.Contains(s.LastBad, "seq 1 (user → cart") || !strings.Contains(s.LastBad, "precision") {
		t.Errorf("status %+v", s)
	}
}

package plugin

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"

	"github.com/livemap/servicemap/internal/testenv"
	"github.com/livemap/servicemap/internal/testenv/nginx"
	"github.com/livemap/servicemap/internal/testenv/testcert"
	"github.com/livemap/servicemap/pkg/agent"
	"github.com/livemap/servicemap/pkg/agent/accesslog"
)

// The gateway's agent path end to end with real parts: requests through a
// real nginx, its access log tailed by the real agent code served over
// HTTPS (verified with agentCACert), polled by the plugin over the plugin protocol. The only thing not
// real is the agent's clock, which the test moves forward so minutes close
// without waiting for them.
//
//	frontend: users u0..u49, two requests each          → 100 calls, 50 users
//	admin:    users u40..u59, one request each, plus
//	          3 × 503 and 2 × 404 by u40                 → 25 calls, 3 errors, 20 users
//
// Distinct users at all entry points: u0..u59 = 60.

// startGatewayAgent is one agent process's worth of state: a Gateway tailing the
// log and the server answering /v1/gateway.
func startGatewayAgent(t *testing.T, logPath string, fromStart bool, clock *testenv.OffsetClock) (*agent.Gateway, http.Handler) {
	t.Helper()
	gw, err := agent.NewGateway(agent.GatewayConfig{
		Node: "edge", Paths: []string{logPath}, FromStart: fromStart, Poll: 20 * time.Millisecond,
		Parser: accesslog.Config{Format: accesslog.FormatJSON, ClientKeyField: "user"}, Lateness: time.Second, Now: clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); gw.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	srv, err := agent.NewServer(nil, "gw-agent-token", 0)
	if err != nil {
		t.Fatal(err)
	}
	srv.ServeGateway(gw)
	return gw, srv.Handler()
}

func TestGatewayAgentThroughPlugin(t *testing.T) {
	app := func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/fail"):
			http.Error(w, "down", http.StatusServiceUnavailable)
		case strings.HasSuffix(r.URL.Path, "/missing"):
			http.NotFound(w, r)
		default:
			io.WriteString(w, "ok\n")
		}
	}
	frontend, admin := httptest.NewServer(http.HandlerFunc(app)), httptest.NewServer(http.HandlerFunc(app))
	t.Cleanup(frontend.Close)
	t.Cleanup(admin.Close)
	ng := nginx.Start(t, nginx.Options{RealIPFromLoopback: true, Upstreams: []nginx.Upstream{
		{Name: "frontend", Addr: frontend.Listener.Addr().String()}, {Name: "admin", Addr: admin.Listener.Addr().String()},
	}})
	client := &http.Client{Timeout: 10 * time.Second}
	get := func(path, user string, want int) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+ng.Addr+path, nil)
		req.Header.Set("X-Forwarded-For", "198.51.100.9")
		req.Header.Set("X-User-Id", user)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}

	// The agent answers behind one URL; restarting it swaps the handler.
	clock := &testenv.OffsetClock{}
	var current atomic.Value
	_, h := startGatewayAgent(t, ng.AccessLog, true, clock)
	current.Store(h)
	// Served over TLS with a certificate of the test's own CA, which the
	// plugin gets as agentCACert.
	ca := testcert.NewCA(t, "servicemap test agents")
	certPEM, keyPEM := ca.Issue(t, nil, []net.IP{net.IPv4(127, 0, 0, 1)})
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	agentURL := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		current.Load().(http.Handler).ServeHTTP(w, r)
	}))
	agentURL.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	agentURL.StartTLS()
	t.Cleanup(agentURL.Close)

	start := time.Now().Add(-time.Minute).Truncate(time.Minute)
	for u := 0; u < 50; u++ {
		get("/frontend/home", fmt.Sprintf("u%d", u), 200)
		get("/frontend/cart", fmt.Sprintf("u%d", u), 200)
	}
	for u := 40; u < 60; u++ {
		get("/admin/panel", fmt.Sprintf("u%d", u), 200)
	}
	for range 3 {
		get("/admin/fail", "u40", 503)
	}
	for range 2 {
		get("/admin/missing", "u40", 404)
	}
	clock.Advance(3 * time.Minute) // every minute the requests fell in is now closed

	h2 := serve(t, map[string]any{
		"refreshIntervalSeconds": 1,
		"gateway":                map[string]any{"enabled": true, "agents": []string{agentURL.URL}},
	}, map[string]string{"agentToken": "gw-agent-token", "agentCACert": string(ca.PEM)})
	from, to := start.Add(-time.Minute), time.Now().Add(5*time.Minute)
	edges := func() map[string][]any {
		dr := h2.query(t, q("M", "serviceMap", from, to, `{}`)).Responses["M"]
		if dr.Error != nil {
			t.Fatal(dr.Error)
		}
		return rowsByID(t, dr.Frames[1], "detail__calls", "detail__errors", "detail__sources", "detail__protocol")
	}
	waitFor(t, "the agent's buckets in the map", func() bool {
		e := edges()
		return len(e["user->frontend"]) > 0 && len(e["user->admin"]) > 0 &&
			e["user->frontend"][0] == int64(100) && e["user->admin"][0] == int64(25)
	})
	e := edges()
	if len(e) != 2 {
		t.Errorf("edges %v, want exactly user->frontend and user->admin", e)
	}
	for id, want := range map[string][]any{
		"user->frontend": {int64(100), int64(0), "gateway", "HTTP"},
		"user->admin":    {int64(25), int64(3), "gateway", "HTTP"}, // 503s are errors, 404s are not
	} {
		if fmt.Sprint(e[id]) != fmt.Sprint(want) {
			t.Errorf("%s: calls, errors, sources, protocol = %v, want %v", id, e[id], want)
		}
	}

	blast := func(service string) []any {
		t.Helper()
		dr := h2.query(t, q("I", "impact", from, to, `{"service":"`+service+`","frame":"summary"}`)).Responses["I"]
		if dr.Error != nil {
			t.Fatal(dr.Error)
		}
		f := dr.Frames[0]
		var row []any
		for _, name := range []string{"blast_users", "blast_total_users", "blast_entry_points"} {
			fld, _ := f.FieldByName(name)
			if fld == nil {
				t.Fatalf("summary has no %s field", name)
			}
			v := fld.At(0)
			if p, ok := v.(*int64); ok && p != nil {
				v = *p
			}
			row = append(row, v)
		}
		return row
	}
	// Small sets are counted exactly by the sparse HyperLogLog.
	if got := fmt.Sprint(blast("frontend")); got != "[50 60 frontend]" {
		t.Errorf("frontend blast radius (users, total, entries) = %s, want [50 60 frontend]", got)
	}
	if got := fmt.Sprint(blast("admin")); got != "[20 60 admin]" {
		t.Errorf("admin blast radius (users, total, entries) = %s, want [20 60 admin]", got)
	}

	// Polling again applies nothing twice.
	time.Sleep(1500 * time.Millisecond)
	if got := fmt.Sprint(edges()["user->frontend"][0]); got != "100" {
		t.Errorf("after more polls user->frontend has %s calls, want 100", got)
	}

	// The agent restarts (new epoch, reading from the end of the log as a
	// restarted agent does): what it already served is not counted again,
	// what comes after is counted once.
	_, restarted := startGatewayAgent(t, ng.AccessLog, false, clock)
	current.Store(restarted)
	time.Sleep(200 * time.Millisecond) // the new tailer has found the end of the log
	for u := 0; u < 7; u++ {
		get("/frontend/home", fmt.Sprintf("late%d", u), 200)
	}
	clock.Advance(3 * time.Minute)
	waitFor(t, "the restarted agent's buckets", func() bool { return fmt.Sprint(edges()["user->frontend"][0]) == "107" })
	time.Sleep(1500 * time.Millisecond)
	if got := fmt.Sprint(edges()["user->frontend"][0]); got != "107" {
		t.Errorf("after the restart user->frontend has %s calls, want 107", got)
	}
	if r := h2.health(t); r.Status != backend.HealthStatusOk || !strings.Contains(r.Message, "gateway") {
		t.Errorf("health %v: %s", r.Status, r.Message)
	}
}

// waitFor polls cond for up to 30 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

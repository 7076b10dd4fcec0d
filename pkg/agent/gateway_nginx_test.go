package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/axiomhq/hyperloglog"

	"github.com/livemap/servicemap/internal/testenv"
	"github.com/livemap/servicemap/internal/testenv/nginx"
	"github.com/livemap/servicemap/pkg/agent/accesslog"
	"github.com/livemap/servicemap/pkg/agent/api"
	"github.com/livemap/servicemap/pkg/sketch"
)

// These tests run a real nginx (internal/testenv/nginx) in front of Go
// backends the test controls, tail nginx's access log with the agent's
// Gateway and compare GET /v1/gateway with the requests that were made.

const gwToken = "gw-test-token"

// backend starts a Go server (HTTP/1.1 and h2c) on loopback.
func backend(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, Protocols: new(http.Protocols)}
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// gwEnv is nginx + backends + an agent serving /v1/gateway.
type gwEnv struct {
	t      *testing.T
	nginx  *nginx.Server
	gw     *Gateway
	gwText *Gateway // the same requests from nginx's text-format log
	clock  *testenv.OffsetClock
	agent  *httptest.Server
	client *http.Client // HTTP/1.1 to nginx
	h2c    *http.Client // h2c to nginx's gRPC listener
}

func startGatewayEnv(t *testing.T) *gwEnv {
	t.Helper()
	cart := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond)
		io.WriteString(w, "cart\n")
	}))
	payments := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/fail"):
			http.Error(w, "down", http.StatusServiceUnavailable)
		case strings.HasSuffix(r.URL.Path, "/missing"):
			http.NotFound(w, r)
		default:
			io.WriteString(w, "paid\n")
		}
	}))
	// A gRPC-shaped h2c backend: OK answers carry grpc-status in the
	// trailers, failures are "trailers-only" (grpc-status in the headers).
	orders := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/grpc")
		if strings.HasSuffix(r.URL.Path, "/Fail") {
			w.Header().Set("Grpc-Status", "14")
			w.Header().Set("Grpc-Message", "unavailable")
			w.WriteHeader(http.StatusOK)
			return
		}
		w.Header().Set("Trailer", "Grpc-Status")
		w.WriteHeader(http.StatusOK)
		w.Write([]byte{0, 0, 0, 0, 0})
		w.Header().Set("Grpc-Status", "0")
	}))
	ng := nginx.Start(t, nginx.Options{RealIPFromLoopback: true, TextLog: true, Upstreams: []nginx.Upstream{
		{Name: "cart", Addr: cart}, {Name: "payments", Addr: payments}, {Name: "orders", Addr: orders, GRPC: true},
	}})
	clock := &testenv.OffsetClock{}
	newGW := func(path, format string) *Gateway {
		gw, err := NewGateway(GatewayConfig{
			Node: "edge-node", Paths: []string{path}, Poll: 20 * time.Millisecond, RotateWait: 2 * time.Second,
			Parser: accesslog.Config{Format: format, ClientKeyField: "user"}, Lateness: 10 * time.Second, Now: clock.Now,
			Callers: []CallerRule{{"batch", netip.MustParsePrefix("10.20.0.0/16")}, {"partner", netip.MustParsePrefix("198.51.100.0/24")}},
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); gw.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		return gw
	}
	gw := newGW(ng.AccessLog, accesslog.FormatJSON)
	gwText := newGW(ng.TextAccessLog, accesslog.FormatText)
	srv, err := NewServer(nil, gwToken, 0)
	if err != nil {
		t.Fatal(err)
	}
	srv.ServeGateway(gw)
	as := httptest.NewServer(srv.Handler())
	t.Cleanup(as.Close)
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	t.Cleanup(tr.CloseIdleConnections)
	return &gwEnv{t: t, nginx: ng, gw: gw, gwText: gwText, clock: clock, agent: as,
		client: &http.Client{Timeout: 10 * time.Second}, h2c: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

// get makes one request through nginx as client addr (X-Forwarded-For)
// with user id (X-User-Id, "" for none) and returns the status.
func (e *gwEnv) get(path, addr, user string) int {
	e.t.Helper()
	req, _ := http.NewRequest("GET", "http://"+e.nginx.Addr+path, nil)
	req.Header.Set("X-Forwarded-For", addr)
	if user != "" {
		req.Header.Set("X-User-Id", user)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// grpc makes one gRPC-shaped call through nginx and returns grpc-status.
func (e *gwEnv) grpc(method, addr, user string) string {
	e.t.Helper()
	req, _ := http.NewRequest("POST", "http://"+e.nginx.GRPCAddr+"/orders.Orders/"+method, bytes.NewReader([]byte{0, 0, 0, 0, 0}))
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("TE", "trailers")
	req.Header.Set("X-Forwarded-For", addr)
	req.Header.Set("X-User-Id", user)
	resp, err := e.h2c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if s := resp.Header.Get("Grpc-Status"); s != "" {
		return s
	}
	return resp.Trailer.Get("Grpc-Status")
}

// report fetches GET /v1/gateway through the agent's HTTP handler.
func (e *gwEnv) report(after uint64, epoch string) *api.GatewayReport {
	e.t.Helper()
	req, _ := http.NewRequest("GET", fmt.Sprintf("%s/v1/gateway?after=%d&epoch=%s", e.agent.URL, after, epoch), nil)
	req.Header.Set("Authorization", "Bearer "+gwToken)
	resp, err := http.DefaultClient.Do(req) // asks for gzip and decodes it
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		e.t.Fatalf("GET /v1/gateway: %s %s", resp.Status, b)
	}
	var rep api.GatewayReport
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		e.t.Fatal(err)
	}
	return &rep
}

// waitLines waits until the agent has read n lines in all.
func (e *gwEnv) waitLines(n uint64) *api.GatewayReport {
	e.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		rep := e.report(0, "")
		got := rep.Lines.Parsed + rep.Lines.Bad
		if got == n {
			time.Sleep(100 * time.Millisecond) // and no more arrive
			if rep = e.report(0, ""); rep.Lines.Parsed+rep.Lines.Bad == n {
				return rep
			}
		}
		if got > n || time.Now().After(deadline) {
			log, _ := os.ReadFile(e.nginx.AccessLog)
			e.t.Fatalf("agent read %d lines, want %d; lines %+v files %+v\naccess log:\n%s", got, n, rep.Lines, rep.Files, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// closeAll moves the agent clock past every minute so far and fetches what
// came after `after`, following More.
func (e *gwEnv) closeAll(after uint64, epoch string) []api.GatewayBucket {
	e.t.Helper()
	e.clock.Advance(2 * time.Minute)
	var out []api.GatewayBucket
	for {
		rep := e.report(after, epoch)
		if rep.Gap != 0 {
			e.t.Fatalf("unexpected gap %d", rep.Gap)
		}
		out = append(out, rep.Buckets...)
		if len(rep.Buckets) > 0 {
			after = rep.Buckets[len(rep.Buckets)-1].Seq
		}
		if !rep.More {
			return out
		}
	}
}

// edgeTotal sums buckets of one (caller, service, protocol) over minutes.
type edgeTotal struct {
	calls, errors uint64
	sumMs         float64
	lat           sketch.Latency
	clients       *hyperloglog.Sketch
}

func totals(t *testing.T, buckets []api.GatewayBucket) map[string]*edgeTotal {
	t.Helper()
	out := map[string]*edgeTotal{}
	seen := map[uint64]bool{}
	for _, b := range buckets {
		if seen[b.Seq] {
			t.Fatalf("seq %d served twice", b.Seq)
		}
		seen[b.Seq] = true
		k := b.Caller + "→" + b.Service + "/" + b.Protocol
		e := out[k]
		if e == nil {
			e = &edgeTotal{clients: hyperloglog.New14()}
			out[k] = e
		}
		e.calls += b.Calls
		e.errors += b.Errors
		e.sumMs += b.LatencySumMs
		var l sketch.Latency
		if err := l.UnmarshalBinary(b.Latency); err != nil {
			t.Fatal(err)
		}
		e.lat.Merge(&l)
		var h hyperloglog.Sketch
		if err := h.UnmarshalBinary(b.Clients); err != nil {
			t.Fatal(err)
		}
		if err := e.clients.Merge(&h); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func TestGatewayNginxCountsRequests(t *testing.T) {
	e := startGatewayEnv(t)
	lines := uint64(0)
	// cart: 40 calls from 10 users at 203.0.113.x, 6 anonymous calls from
	// the batch network (2 addresses), 3 from a partner.
	for i := range 40 {
		if s := e.get("/cart/items", fmt.Sprintf("203.0.113.%d", i%13), fmt.Sprint("user-", i%10)); s != 200 {
			t.Fatalf("cart status %d", s)
		}
	}
	for i := range 6 {
		e.get("/cart/items", fmt.Sprintf("10.20.%d.7", i%2), "")
	}
	for range 3 {
		e.get("/cart/items", "198.51.100.4", "")
	}
	// payments: 12 OK, 7 failing (503), 4 not found (404: not an error).
	for i := range 12 {
		e.get("/payments/pay", "203.0.113.50", fmt.Sprint("user-", i%3))
	}
	for i := range 7 {
		if s := e.get("/payments/fail", "203.0.113.51", fmt.Sprint("user-", 100+i)); s != 503 {
			t.Fatalf("payments/fail status %d", s)
		}
	}
	for range 4 {
		if s := e.get("/payments/missing", "203.0.113.52", "user-200"); s != 404 {
			t.Fatalf("payments/missing status %d", s)
		}
	}
	// orders over gRPC: 6 OK, 4 UNAVAILABLE.
	for i := range 6 {
		if s := e.grpc("Get", "203.0.113.60", fmt.Sprint("user-", i)); s != "0" {
			t.Fatalf("grpc status %q", s)
		}
	}
	for i := range 4 {
		if s := e.grpc("Fail", "203.0.113.61", fmt.Sprint("user-", i)); s != "14" {
			t.Fatalf("grpc fail status %q", s)
		}
	}
	// nginx answers /gateway-health itself: no upstream → bad "no_service".
	for range 3 {
		e.get("/gateway-health", "203.0.113.70", "")
	}
	lines += 40 + 6 + 3 + 12 + 7 + 4 + 6 + 4 + 3
	rep := e.waitLines(lines)
	if rep.Lines.Parsed != lines-3 || rep.Lines.Bad != 3 || rep.Lines.BadByReason[accesslog.ReasonNoService] != 3 {
		t.Fatalf("lines %+v", rep.Lines)
	}
	if rep.LastSeq != 0 || len(rep.Buckets) != 0 {
		t.Fatalf("closed before minute end + lateness: %+v", rep)
	}
	if len(rep.Files) != 1 || rep.Files[0].Path != e.nginx.AccessLog || rep.Files[0].Error != "" || rep.Files[0].Offset == 0 {
		t.Fatalf("files %+v", rep.Files)
	}
	epoch := rep.Epoch
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		l := e.gwText.Report(0, "").Lines
		if l.Parsed+l.Bad == lines {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("text log: %+v", l)
		}
	}

	buckets := e.closeAll(0, epoch)
	tot := totals(t, buckets)
	want := map[string]struct {
		calls, errors, clients uint64
	}{
		"user→cart/http":     {40, 0, 10},
		"batch→cart/http":    {6, 0, 2},
		"partner→cart/http":  {3, 0, 1},
		"user→payments/http": {12 + 7 + 4, 7, 3 + 7 + 1},
		"user→orders/grpc":   {10, 4, 6},
	}
	if len(tot) != len(want) {
		keys := []string{}
		for k := range tot {
			keys = append(keys, k)
		}
		t.Fatalf("edges %v, want %d of them", keys, len(want))
	}
	for k, w := range want {
		g := tot[k]
		if g == nil {
			t.Fatalf("no buckets for %s", k)
		}
		// Up to ~1000 distinct keys the sparse HLL is exact in practice.
		if g.calls != w.calls || g.errors != w.errors || g.clients.Estimate() != w.clients {
			t.Errorf("%s: calls %d errors %d clients %d, want %+v", k, g.calls, g.errors, g.clients.Estimate(), w)
		}
		if g.lat.Count() != g.calls {
			t.Errorf("%s: latency sketch holds %d, want %d", k, g.lat.Count(), g.calls)
		}
	}
	// cart sleeps 20 ms: every request took at least that, and nginx's
	// request_time (ms resolution) shows it.
	cart := tot["user→cart/http"]
	if cart.sumMs < 40*20 || cart.lat.Quantile(0) < 19 || cart.lat.Quantile(1) > 2000 {
		t.Errorf("cart latency: sum %.1f ms, min %.1f, max %.1f", cart.sumMs, cart.lat.Quantile(0), cart.lat.Quantile(1))
	}
	for _, b := range buckets {
		if b.Minute.Second() != 0 || b.Minute.Nanosecond() != 0 || b.Minute.Location() != time.UTC {
			t.Errorf("minute %v not a whole UTC minute", b.Minute)
		}
	}

	// nginx's text-format log of the same requests gives the same answer.
	textRep := e.gwText.Report(0, "")
	if textRep.Lines.Parsed != rep.Lines.Parsed || textRep.Lines.Bad != 3 || textRep.Lines.BadByReason[accesslog.ReasonNoService] != 3 {
		t.Fatalf("text log lines %+v", textRep.Lines)
	}
	textTot := totals(t, textRep.Buckets)
	for k, j := range tot {
		x := textTot[k]
		if x == nil || x.calls != j.calls || x.errors != j.errors || x.clients.Estimate() != j.clients.Estimate() ||
			x.sumMs < j.sumMs-1e-6 || x.sumMs > j.sumMs+1e-6 {
			t.Errorf("%s: text log %+v, JSON log %+v", k, x, j)
		}
	}
	if len(textTot) != len(tot) {
		t.Errorf("text log has %d edges, JSON log %d", len(textTot), len(tot))
	}

	// Same epoch, after = LastSeq: nothing new. Another epoch: all again.
	last := buckets[len(buckets)-1].Seq
	if rep := e.report(last, epoch); len(rep.Buckets) != 0 || rep.LastSeq != last {
		t.Fatalf("after last seq: %+v", rep)
	}
	if rep := e.report(last, "not-"+epoch); len(rep.Buckets) != len(buckets) || rep.Buckets[0].Seq != 1 {
		t.Fatalf("other epoch got %d buckets, want all %d", len(rep.Buckets), len(buckets))
	}

	// Lines arriving after their minute was closed (the agent clock is now
	// ahead) become new buckets with new Seqs: counted once, not lost.
	for i := range 5 {
		e.get("/cart/items", "203.0.113.1", fmt.Sprint("late-", i))
	}
	lines += 5
	e.waitLines(lines)
	late := e.closeAll(last, epoch)
	lt := totals(t, late)
	if len(lt) != 1 || lt["user→cart/http"] == nil || lt["user→cart/http"].calls != 5 || lt["user→cart/http"].clients.Estimate() != 5 || late[0].Seq != last+1 {
		t.Fatalf("late buckets %+v", late)
	}

	// Past the retention (2 h) everything is dropped: a client that had
	// applied up to `last` misses the late buckets and is told how many.
	e.clock.Advance(3 * time.Hour)
	lastSeq := late[len(late)-1].Seq
	if rep := e.report(last, epoch); rep.Gap != lastSeq-last || rep.Oldest != lastSeq+1 || len(rep.Buckets) != 0 || rep.LastSeq != lastSeq {
		t.Fatalf("after retention: gap %d oldest %d lastSeq %d buckets %d", rep.Gap, rep.Oldest, rep.LastSeq, len(rep.Buckets))
	}

	// Unauthorized and bad requests.
	for _, c := range []struct {
		auth, query string
		status      int
	}{{"", "", 401}, {"Bearer wrong", "", 401}, {"Bearer " + gwToken, "?after=-1", 400}, {"Bearer " + gwToken, "?after=x", 400}} {
		req, _ := http.NewRequest("GET", e.agent.URL+"/v1/gateway"+c.query, nil)
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.status {
			t.Errorf("auth %q query %q: status %d, want %d", c.auth, c.query, resp.StatusCode, c.status)
		}
	}
}

func TestGatewayNginxRotationAndBadLines(t *testing.T) {
	e := startGatewayEnv(t)
	req := func(n int, tag string) {
		for i := range n {
			if s := e.get("/payments/pay", "203.0.113.9", fmt.Sprintf("%s-%d", tag, i)); s != 200 {
				t.Fatalf("status %d", s)
			}
		}
	}
	req(20, "a")
	e.waitLines(20)

	// logrotate's way: rename, nginx keeps writing to the renamed file
	// until it reopens its logs on SIGUSR1.
	if err := os.Rename(e.nginx.AccessLog, e.nginx.AccessLog+".1"); err != nil {
		t.Fatal(err)
	}
	req(15, "b") // into access.log.1
	if err := e.nginx.Reopen(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(e.nginx.AccessLog); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx did not reopen its log: %s", e.nginx.ErrorLog())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Malformed lines between good ones in the new file (written with
	// O_APPEND like nginx, so lines do not mix).
	junk := []string{"not json at all\n", `{"time":"2026-11-23T21:40:38+00:00","client":"1.2.3.4","service":"x","status":"200"}` + "\n",
		`{"time":"yesterday","client":"1.2.3.4","service":"x","status":"200","request_time":"0.001"}` + "\n",
		strings.Repeat("z", DefaultGatewayMaxLine+10) + "\n"}
	for i := range 25 {
		req(1, fmt.Sprint("c", i))
		if i%6 == 0 && i/6 < len(junk) {
			appendFile(t, e.nginx.AccessLog, junk[i/6])
		}
	}
	rep := e.waitLines(20 + 15 + 25 + uint64(len(junk)))
	wantBad := map[string]uint64{accesslog.ReasonJSON: 1, accesslog.ReasonBadDuration: 1, accesslog.ReasonBadTime: 1, ReasonTooLong: 1}
	if rep.Lines.Parsed != 60 || fmt.Sprint(rep.Lines.BadByReason) != fmt.Sprint(wantBad) {
		t.Fatalf("lines %+v", rep.Lines)
	}
	if rep.Files[0].Rotations != 1 || rep.Files[0].Error != "" {
		t.Fatalf("files %+v", rep.Files)
	}
	tot := totals(t, e.closeAll(0, rep.Epoch))
	p := tot["user→payments/http"]
	// Users a-0..a-19, b-0..b-14, c0..c24: 60 distinct, each counted once.
	if len(tot) != 1 || p == nil || p.calls != 60 || p.errors != 0 || p.clients.Estimate() != 60 {
		t.Fatalf("payments after rotation: %+v", p)
	}
}

// TestGatewayNginxConcurrentRequests: two nginx workers writing the log
// at once under parallel load; every request is counted exactly once.
func TestGatewayNginxConcurrentRequests(t *testing.T) {
	e := startGatewayEnv(t)
	const workers, each = 8, 60
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				path := "/payments/pay"
				if i%10 == 0 {
					path = "/payments/fail"
				}
				req, _ := http.NewRequest("GET", "http://"+e.nginx.Addr+path, nil)
				req.Header.Set("X-Forwarded-For", fmt.Sprintf("203.0.113.%d", w))
				req.Header.Set("X-User-Id", fmt.Sprintf("u-%d-%d", w, i%25))
				resp, err := e.client.Do(req)
				if err != nil {
					errs <- err
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	rep := e.waitLines(workers * each)
	if rep.Lines.Bad != 0 {
		t.Fatalf("bad lines under load: %+v", rep.Lines)
	}
	tot := totals(t, e.closeAll(0, rep.Epoch))
	p := tot["user→payments/http"]
	if len(tot) != 1 || p == nil || p.calls != workers*each || p.errors != workers*each/10 || p.clients.Estimate() != workers*25 {
		t.Fatalf("payments: %+v (edges %d)", p, len(tot))
	}
}

package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend/log"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/livemap/servicemap/internal/testenv/kubeapi"
	testnetns "github.com/livemap/servicemap/internal/testenv/netns"
	"github.com/livemap/servicemap/pkg/agent"
	"github.com/livemap/servicemap/pkg/agent/api"
	"github.com/livemap/servicemap/pkg/config"
	"github.com/livemap/servicemap/pkg/model"
	"github.com/livemap/servicemap/pkg/store"
)

// doIn runs fn inside a network namespace; sockets made by fn stay there.
func doIn(t *testing.T, ns string, fn func() error) {
	t.Helper()
	if err := testnetns.Do(ns, fn); err != nil {
		t.Fatal(err)
	}
}

// swappable serves whichever agent is current, so a test can restart the
// agent behind one address.
type swappable struct {
	mu sync.Mutex
	ag *agent.Agent
}

func (s *swappable) get() *agent.Agent { s.mu.Lock(); defer s.mu.Unlock(); return s.ag }

func (s *swappable) set(ag *agent.Agent) { s.mu.Lock(); s.ag = ag; s.mu.Unlock() }

func (s *swappable) Last() *api.Snapshot { return s.get().Last() }

func (s *swappable) Births(after, through, sampled uint64) ([]api.PollBirths, uint64) {
	return s.get().Births(after, through, sampled)
}

// birthsRig is a client pod and a server pod (real network namespaces)
// known to a real kube-apiserver as frontend-1 and checkout-1 behind the
// Service checkout (a ClusterIP DNATed in the client's namespace), a real
// agent over HTTP behind one address, and the plugin's source on it.
type birthsRig struct {
	t                  *testing.T
	ctx                context.Context
	clientPod          testnetns.Pod
	current            *swappable
	srv                *agent.Server
	addr               string
	settings           *config.Settings
	c                  *cluster
	serverIP, clientIP string
	requests           atomic.Int64 // HTTP requests the agent answered
}

func newBirthsRig(t *testing.T, prefix string) *birthsRig {
	testnetns.RequireRoot(t)
	clientPod, serverPod := testnetns.PodPair(t, prefix)
	clientPod.DNAT(t, pairClusterIP, 80, serverPod.IP+":8080")
	kc := kubeapi.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	admin := kubernetes.NewForConfigOrDie(kc.AdminConfig())
	c := &cluster{T: t, Ctx: ctx, Client: admin}
	const ns = "shop"
	_, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	c.Must(err)
	feLbl, coLbl := map[string]string{"app": "frontend"}, map[string]string{"app": "checkout"}
	fe := c.Pod(ns, "frontend-1", clientPod.IP, feLbl, nil)
	co := c.Pod(ns, "checkout-1", serverPod.IP, coLbl, nil)
	_, err = admin.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "checkout"},
		Spec: corev1.ServiceSpec{ClusterIP: pairClusterIP, Selector: coLbl,
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}}},
	}, metav1.CreateOptions{})
	c.Must(err)
	c.Slice(ns, "checkout", 8080, "http", co)
	c.Service(ns, "frontend", feLbl, corev1.ServicePort{Name: "http", Port: 80, TargetPort: intstr.FromInt32(3000)}, nil)
	c.Slice(ns, "frontend", 3000, "http", fe)

	// The server pod: the server closes after the client did, so the
	// client keeps each connection in TIME_WAIT.
	var ln net.Listener
	doIn(t, serverPod.NS, func() (err error) { ln, err = net.Listen("tcp4", ":8080"); return err })
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(io.Discard, c); c.Close() }()
		}
	}()

	current := &swappable{ag: agent.New(agent.Config{Node: "node-a", PollInterval: time.Second, BirthsRetention: time.Hour})}
	current.get().Poll() // the namespaces' first poll: births count from the next one
	srv, err := agent.NewServer(current, "agent-secret", 0)
	c.Must(err)
	hln, err := net.Listen("tcp", "127.0.0.1:0")
	c.Must(err)
	r := &birthsRig{t: t, ctx: ctx, clientPod: clientPod, current: current, srv: srv, addr: hln.Addr().String(),
		c: c, serverIP: serverPod.IP, clientIP: clientPod.IP}
	h := srv.Handler()
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.requests.Add(1)
		h.ServeHTTP(w, req)
	}), ReadHeaderTimeout: 5 * time.Second}
	go hs.Serve(hln)
	t.Cleanup(func() { hs.Close() })

	jsonData, _ := json.Marshal(map[string]any{
		"refreshIntervalSeconds": 5,
		"kubernetes": map[string]any{"enabled": true, "mode": "url", "apiServerUrl": kc.URL(), "namespaces": []string{ns},
			"staticAgents": []string{hln.Addr().String()}},
	})
	settings, err := config.Parse(jsonData, map[string]string{
		"kubeToken": kc.AdminToken(), "kubeCACert": string(kc.CACertPEM()), "agentToken": "agent-secret"})
	c.Must(err)
	r.settings = settings
	return r
}

// short makes n connections from the client that the client closes first
// (each left in TIME_WAIT there).
func (r *birthsRig) short(n int) {
	r.t.Helper()
	for _, conn := range r.open(n) {
		r.closeAll([]net.Conn{conn})
	}
}

func (r *birthsRig) open(n int) []net.Conn {
	r.t.Helper()
	var out []net.Conn
	for i := 0; i < n; i++ {
		var conn net.Conn
		doIn(r.t, r.clientPod.NS, func() (err error) {
			conn, err = net.DialTimeout("tcp4", pairClusterIP+":80", 5*time.Second)
			return err
		})
		out = append(out, conn)
	}
	return out
}

func (r *birthsRig) closeAll(conns []net.Conn) {
	r.t.Helper()
	for _, conn := range conns {
		port := conn.LocalAddr().(*net.TCPAddr).Port
		conn.Close()
		waitState(r.t, r.clientPod.NS, "time-wait", fmt.Sprintf("sport = :%d", port))
	}
}

// plugin is one data source instance's view: its own store and source.
type plugin struct {
	r     *birthsRig
	st    *store.Store
	src   *Source
	begin time.Time
}

// newPlugin starts a source with a fresh store, as a plugin (re)start does.
func (r *birthsRig) newPlugin() *plugin {
	r.t.Helper()
	st := store.New(store.Options{Retention: time.Hour})
	src, err := New(r.settings, st, log.DefaultLogger)
	r.c.Must(err)
	r.t.Cleanup(src.Close)
	syncCtx, syncCancel := context.WithTimeout(r.ctx, 60*time.Second)
	r.c.Must(src.WaitForSync(syncCtx))
	syncCancel()
	eventually(r.t, "pods resolve", func() error {
		if err := resolvesTo(src, r.serverIP, 8080, "checkout")(); err != nil {
			return err
		}
		return resolvesTo(src, r.clientIP, 0, "frontend")()
	})
	return &plugin{r: r, st: st, src: src, begin: time.Now().Add(-time.Hour)}
}

// count is the connections on frontend→checkout in the store (the only
// edge there may be).
func (p *plugin) count() uint64 {
	edges, _ := p.st.Snapshot(p.begin, time.Now().Add(time.Minute), model.SourceNetwork)
	var n uint64
	for _, e := range edges {
		if e.Key != (model.EdgeKey{Source: "frontend", Target: "checkout"}) {
			p.r.t.Errorf("unexpected edge %v", e.Key)
		}
		n += e.Stats.Connections
	}
	return n
}

func (p *plugin) detail() string {
	for _, s := range p.st.Statuses() {
		if s.Source == model.SourceNetwork {
			return s.Detail + s.LastError
		}
	}
	return ""
}

// refresh runs one refresh and checks the edge's total.
func (p *plugin) refresh(want uint64, what string) {
	p.r.t.Helper()
	if err := p.src.Refresh(p.r.ctx); err != nil {
		p.r.t.Fatalf("%s: refresh: %v", what, err)
	}
	if got := p.count(); got != want {
		p.r.t.Errorf("%s: frontend->checkout = %d connections, want %d (%s)", what, got, want, p.detail())
	}
}

// TestBirthsLosslessAcrossFetches: the real agent polls several times
// between two refreshes of the plugin's source (which fetches it over HTTP
// and resolves through a real kube-apiserver). Every short connection made
// in between counts exactly once: N connections → N, however many agent
// polls they are spread over; a refresh without a new poll adds nothing; a
// restarted agent's births count and the loss of the old one's unfetched
// births is reported; births dropped by the agent's retention before a
// fetch are reported, not hidden.
func TestBirthsLosslessAcrossFetches(t *testing.T) {
	r := newBirthsRig(t, "10.245")
	p := r.newPlugin()
	current, short, refresh, detail, open, closeAll := r.current, r.short, p.refresh, p.detail, r.open, r.closeAll

	refresh(0, "first fetch, nothing made yet")
	// 10 connections over 5 agent polls (one without any), one fetch.
	total := uint64(0)
	for _, n := range []int{2, 3, 0, 1, 4} {
		short(n)
		current.get().Poll()
		total += uint64(n)
	}
	refresh(total, "10 short connections over 5 agent polls")
	if d := detail(); !strings.Contains(d, "10 closed births and 0 closed connections no fetch had seen from 4 agent polls") {
		t.Errorf("detail %q, want the 10 births from the 4 polls that had some", d)
	}
	refresh(total, "a fetch without a new agent poll")
	short(2)
	current.get().Poll()
	total += 2
	refresh(total, "2 more in one poll")

	// The agent restarts: 1 birth of the old run was polled but never
	// fetched (lost, and reported); the new run's births all count.
	short(1)
	current.get().Poll()
	restarted := agent.New(agent.Config{Node: "node-a", PollInterval: time.Second, BirthsRetention: 3 * time.Second})
	restarted.Poll()
	current.set(restarted)
	short(3)
	restarted.Poll()
	total += 3
	refresh(total, "after an agent restart")
	if d := detail(); !strings.Contains(d, "restarted") || !strings.Contains(d, "LOST") {
		t.Errorf("detail %q does not report the restart", d)
	}

	// The new run holds 3 polls: a birth in a poll that is dropped before
	// the next fetch is lost and reported as a gap.
	short(1)
	for i := 0; i < 4; i++ {
		restarted.Poll()
	}
	refresh(total, "births dropped by the agent's retention")
	if d := detail(); !strings.Contains(d, "births of 1 polls (3..3) were dropped") {
		t.Errorf("detail %q does not report the dropped poll", d)
	}
	short(2)
	restarted.Poll()
	total += 2
	refresh(total, "after the gap")

	// Connections that an agent poll saw open but that closed before the
	// next fetch are no births; no fetched snapshot showed them either.
	// They count once, from the poll where they turned TIME_WAIT.
	unseen := open(3)
	restarted.Poll() // ESTABLISHED: not fetched
	closeAll(unseen)
	restarted.Poll()
	total += 3
	refresh(total, "3 connections seen open by a poll no fetch took, then closed")
	if d := detail(); !strings.Contains(d, "0 closed births and 3 closed connections no fetch had seen") {
		t.Errorf("detail %q, want 3 closed connections no fetch had seen", d)
	}
	// A connection a fetch did see (counted live there) is not counted again
	// when it closes.
	seenOpen := open(2)
	restarted.Poll()
	total += 2
	refresh(total, "2 connections open at a fetch")
	closeAll(seenOpen)
	restarted.Poll()
	refresh(total, "the 2 fetched connections closed")
}

// TestBirthsPagedAndFirstContact: the real agent's births bound is set so
// low that every answer holds one poll (a whole poll is always sent), so the
// births of several polls between two fetches come in several answers
// (More). The source follows More within one refresh and counts every
// birth once, applies the snapshot's rows only with the last answer (a
// connection it counted open is not counted again when it closes); with
// fewer answers allowed per refresh it reports the rest and takes it in the
// next refreshes, again each birth once. A plugin (re)start, with an empty
// store, counts every birth the agent still holds at its own poll time: the
// same total as the plugin that watched them happen. After an agent this
// source forgot, polls before its last listing are skipped and reported.
func TestBirthsPagedAndFirstContact(t *testing.T) {
	r := newBirthsRig(t, "10.246")
	r.srv.MaxBirthsBytes = 1
	ag := r.current.get()
	p := r.newPlugin()
	p.src.birthPages = 1000
	p.refresh(0, "first fetch, nothing made yet")

	// 10 births over 6 agent polls (and one poll without), and 2
	// connections open at the last poll, all between two fetches.
	total := uint64(0)
	for _, n := range []int{1, 2, 0, 1, 3, 1, 2} {
		r.short(n)
		ag.Poll()
		total += uint64(n)
	}
	live := r.open(2)
	ag.Poll()
	total += 2
	before := r.requests.Load()
	p.refresh(total, "10 births over 6 polls, one poll an answer, 2 open connections")
	if n := r.requests.Load() - before; n < 6 {
		t.Errorf("one refresh asked the agent %d times, want at least one answer for each of the 6 polls with births", n)
	}
	if d := p.detail(); !strings.Contains(d, "10 closed births and 0 closed connections no fetch had seen") || strings.Contains(d, "LOST") || strings.Contains(d, "NOT COUNTED") {
		t.Errorf("detail %q, want 10 births and nothing lost or left", d)
	}
	p.refresh(total, "a fetch without a new agent poll")
	r.closeAll(live)
	ag.Poll()
	p.refresh(total, "the 2 connections counted open closed")
	phaseA := total
	time.Sleep(20 * time.Millisecond) // poll times strictly before mid
	mid := time.Now()
	time.Sleep(20 * time.Millisecond)

	// Two answers a refresh: the rest waits, is reported, and comes with
	// the next refreshes, each birth once.
	p.src.birthPages = 2
	for _, n := range []int{1, 1, 2, 1, 1} {
		r.short(n)
		ag.Poll()
		total += uint64(n)
	}
	if err := p.src.Refresh(r.ctx); err != nil {
		t.Fatal(err)
	}
	if got, d := p.count(), p.detail(); got >= total || !strings.Contains(d, "the rest next refresh") {
		t.Errorf("2 answers for 5 polls with births: %d connections (want fewer than %d), detail %q (want the rest reported)", got, total, d)
	}
	for i := 0; i < 10 && strings.Contains(p.detail(), "the rest next refresh"); i++ {
		if err := p.src.Refresh(r.ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := p.count(); got != total {
		t.Errorf("after catching up: %d connections, want %d (%s)", got, total, p.detail())
	}
	p.refresh(total, "caught up, no new poll")

	// The answers of one refresh are bounded by the response limit too:
	// with a limit of exactly the first answer's size (measured with the
	// same query; no agent poll in between, so the refresh gets the same
	// answer), that answer ends the refresh.
	p.src.birthPages = 1000
	for i := 0; i < 3; i++ {
		r.short(1)
		ag.Poll()
		total++
	}
	_, one, err := p.src.fetch(r.ctx, r.addr, p.src.agentRuns[r.addr], true)
	if err != nil {
		t.Fatal(err)
	}
	p.src.maxBytes = one
	if err := p.src.Refresh(r.ctx); err != nil {
		t.Fatal(err)
	}
	if got, d := p.count(), p.detail(); got >= total || !strings.Contains(d, fmt.Sprintf(" in 1 answers (%d bytes), the rest next refresh", one)) {
		t.Errorf("limit = the first answer (%d bytes): %d connections (want fewer than %d), detail %q (want 1 answer and the rest reported)", one, got, total, d)
	}
	p.src.maxBytes = MaxSnapshotBytes
	p.refresh(total, "the rest, with the usual limit")

	// A plugin start: first contact, fresh store. Every held poll counts at
	// its own time, the closed connections the first plugin had counted open
	// as closed connections no fetch (of this plugin) had seen.
	q := r.newPlugin()
	q.src.birthPages = 1000
	q.refresh(total, "plugin start: every birth the agent holds")
	if d := q.detail(); !strings.Contains(d, "19 closed births and 2 closed connections no fetch had seen") || strings.Contains(d, "LOST") || strings.Contains(d, "NOT COUNTED") {
		t.Errorf("detail %q, want 19 births, 2 closed connections, nothing lost or left", d)
	}
	from, to := time.Now().Add(-time.Hour), time.Now().Add(time.Minute)
	starts, got := q.st.Windows(from, to, time.Minute, model.SourceNetwork)
	_, want := p.st.Windows(from, to, time.Minute, model.SourceNetwork)
	key := model.EdgeKey{Source: "frontend", Target: "checkout"}
	for i := range starts {
		var g, w uint64
		if e := got[key]; i < len(e) && e[i] != nil {
			g = e[i].Stats.Connections
		}
		if e := want[key]; i < len(e) && e[i] != nil {
			w = e[i].Stats.Connections
		}
		if g != w {
			t.Errorf("minute %s: restarted plugin %d connections, the one that watched %d", starts[i].Format(time.TimeOnly), g, w)
		}
	}
	q.refresh(total, "the restarted plugin's next fetch")

	// First contact after an agent was forgotten (not listed for an hour):
	// held polls before its last listing may have been counted then. Here
	// the source is told so directly: a static agent is never unlisted.
	f := r.newPlugin()
	f.src.birthPages = 1000
	f.src.forgotBefore = mid
	f.refresh(total-phaseA, "first contact after a forgotten agent: polls after it only")
	if d := f.detail(); !strings.Contains(d, "NOT COUNTED") || !strings.Contains(d, "skipped") {
		t.Errorf("detail %q does not report the skipped polls", d)
	}
}

// TestCheckBirthsRefusesConfusedAnswers: births that do not fit their own
// range are refused with the reason, so nothing is applied twice and a
// "more" that would not move does not loop. Hand-made answers: the real
// agent does not send these.
func TestCheckBirthsRefusesConfusedAnswers(t *testing.T) {
	polls := func(seqs ...uint64) []api.PollBirths {
		out := []api.PollBirths{}
		for _, s := range seqs {
			out = append(out, api.PollBirths{Seq: s})
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		epoch  string
		births *api.Births
		want   string // "" accepted
	}{
		{"whole range", "e", &api.Births{After: 2, Through: 5, Polls: polls(3, 5)}, ""},
		{"a page", "e", &api.Births{After: 2, Through: 3, More: true, Polls: polls(3)}, ""},
		{"nothing new", "e", &api.Births{After: 5, Through: 5, Polls: polls()}, ""},
		{"no epoch", "", &api.Births{After: 4, Through: 5, Polls: polls()}, "snapshot without epoch"},
		{"no births", "e", nil, "snapshot without births"},
		{"through beyond seq", "e", &api.Births{After: 2, Through: 6, Polls: polls()}, "births cover polls 3..6, beyond the snapshot's seq 5"},
		{"after beyond through", "e", &api.Births{After: 4, Through: 3, Polls: polls()}, "beyond the snapshot's seq 5"},
		{"poll after through", "e", &api.Births{After: 2, Through: 4, More: true, Polls: polls(5)}, "births of poll 5 outside 3..4 or out of order"},
		{"poll at after", "e", &api.Births{After: 2, Through: 5, Polls: polls(2)}, "births of poll 2 outside 3..5"},
		{"poll twice", "e", &api.Births{After: 2, Through: 5, Polls: polls(3, 3)}, "births of poll 3 outside 3..5 or out of order"},
		{"more without progress", "e", &api.Births{After: 3, Through: 3, More: true, Polls: polls()}, "births say more but cover polls 4..3 of 5"},
		{"more at the last poll", "e", &api.Births{After: 2, Through: 5, More: true, Polls: polls(3)}, "births say more but cover polls 3..5 of 5"},
	} {
		err := checkBirths(&api.Snapshot{Epoch: tc.epoch, Seq: 5, Births: tc.births})
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: refused: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
	}
}

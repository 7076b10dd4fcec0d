package agent

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/livemap/servicemap/pkg/agent/api"
)

func ep(ap netip.AddrPort) api.Endpoint { return api.Endpoint{IP: ap.Addr().String(), Port: ap.Port()} }

func connKey(c api.Conn) string {
	return fmt.Sprintf("%s %s:%d -> %s:%d %s", c.Direction, c.Local.IP, c.Local.Port, c.Remote.IP, c.Remote.Port, c.State)
}

// normConns drops the New flag and sorts, for set comparison.
func normConns(cs []api.Conn) []string {
	out := make([]string, 0, len(cs))
	for _, c := range cs {
		out = append(out, connKey(c))
	}
	slices.Sort(out)
	return out
}

func findNS(s *api.Snapshot, inode uint64) []api.Namespace {
	var out []api.Namespace
	for _, ns := range s.Namespaces {
		if ns.Inode == inode {
			out = append(out, ns)
		}
	}
	return out
}

// scenario is the topology of the end-to-end tests: pods A, B, C and the
// connections made between them.
type scenario struct {
	tn        *testNet
	a, b, c   *testPod
	want      map[uint64][]api.Conn
	listeners map[uint64][]api.Listener
	// TIME_WAIT connection (A -> B, closed by A first).
	twLocal netip.AddrPort
	serverB *echoServer
}

func setupScenario(t *testing.T) *scenario {
	ensureIPTables(t)
	tn := newTestNet(t, 3)
	s := &scenario{tn: tn, a: tn.pods[0], b: tn.pods[1], c: tn.pods[2],
		want: map[uint64][]api.Conn{}, listeners: map[uint64][]api.Listener{}}
	a, b, c := s.a, s.b, s.c
	// A second process in A: the namespace must still be read once.
	tn.startProcess(t, a)

	bAddr := netip.AddrPortFrom(b.v4, 8080)
	cAddr6 := netip.AddrPortFrom(c.v6, 9090)
	cWild := netip.AddrPortFrom(netip.IPv4Unspecified(), 8080)
	s.serverB = listenIn(t, b.name, "tcp4", bAddr.String())
	listenIn(t, c.name, "tcp6", cAddr6.String())
	listenIn(t, c.name, "tcp4", cWild.String())
	s.listeners[a.inode] = []api.Listener{}
	s.listeners[b.inode] = []api.Listener{{Endpoint: ep(bAddr)}}
	s.listeners[c.inode] = []api.Listener{{Endpoint: ep(cWild)}, {Endpoint: ep(cAddr6)}}

	// A -> B over IPv4.
	ab := dialIn(t, a.name, "tcp4", bAddr.String())
	abL := addrPort(ab.LocalAddr())
	s.want[a.inode] = append(s.want[a.inode], api.Conn{Local: ep(abL), Remote: ep(bAddr), State: "ESTABLISHED", Direction: api.Outbound})
	s.want[b.inode] = append(s.want[b.inode], api.Conn{Local: ep(bAddr), Remote: ep(abL), State: "ESTABLISHED", Direction: api.Inbound})

	// B -> C over IPv6.
	bc := dialIn(t, b.name, "tcp6", cAddr6.String())
	bcL := addrPort(bc.LocalAddr())
	s.want[b.inode] = append(s.want[b.inode], api.Conn{Local: ep(bcL), Remote: ep(cAddr6), State: "ESTABLISHED", Direction: api.Outbound})
	s.want[c.inode] = append(s.want[c.inode], api.Conn{Local: ep(cAddr6), Remote: ep(bcL), State: "ESTABLISHED", Direction: api.Inbound})

	// A -> "Service" 10.96.0.10:80, DNAT in A's namespace to C:8080.
	clusterIP := netip.MustParseAddrPort("10.96.0.10:80")
	cPod := netip.AddrPortFrom(c.v4, 8080)
	runCmd(t, "ip", "-n", a.name, "route", "add", "10.96.0.0/16", "dev", "eth0")
	runCmd(t, "ip", "netns", "exec", a.name, "iptables", "-t", "nat", "-A", "OUTPUT",
		"-d", "10.96.0.10/32", "-p", "tcp", "--dport", "80", "-j", "DNAT", "--to-destination", cPod.String())
	svc := dialIn(t, a.name, "tcp4", clusterIP.String())
	if got := addrPort(svc.RemoteAddr()); got != clusterIP {
		t.Fatalf("service conn remote %v", got)
	}
	svcL := addrPort(svc.LocalAddr())
	// The client row shows the ClusterIP (conntrack is not read); the server
	// row shows the client pod.
	s.want[a.inode] = append(s.want[a.inode], api.Conn{Local: ep(svcL), Remote: ep(clusterIP), State: "ESTABLISHED", Direction: api.Outbound})
	s.want[c.inode] = append(s.want[c.inode], api.Conn{Local: ep(cPod), Remote: ep(svcL), State: "ESTABLISHED", Direction: api.Inbound})
	return s
}

// makeTimeWait opens A -> B, closes it from A and waits until B closed its
// side, so A holds the connection in TIME_WAIT and B holds nothing.
func (s *scenario) makeTimeWait(t *testing.T) {
	srv := s.serverB
	bAddr := netip.AddrPortFrom(s.b.v4, 8080)
	tw := dialIn(t, s.a.name, "tcp4", bAddr.String())
	s.twLocal = addrPort(tw.LocalAddr())
	tw.Close()
	select {
	case ra := <-srv.closed:
		if ra != s.twLocal {
			t.Fatalf("server closed %v, want %v", ra, s.twLocal)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("server did not close")
	}
	s.want[s.a.inode] = append(s.want[s.a.inode], api.Conn{Local: ep(s.twLocal), Remote: ep(bAddr), State: "TIME_WAIT", Direction: api.Outbound})
}

// check compares the snapshot's rows for the scenario namespaces with the
// connections made; it returns a description of the differences.
func (s *scenario) check(snap *api.Snapshot) string {
	var diffs []string
	for _, p := range []*testPod{s.a, s.b, s.c} {
		got := findNS(snap, p.inode)
		if len(got) != 1 {
			diffs = append(diffs, fmt.Sprintf("%s: namespace %d appears %d times", p.name, p.inode, len(got)))
			continue
		}
		ns := got[0]
		if g, w := normConns(ns.Connections), normConns(s.want[p.inode]); !reflect.DeepEqual(g, w) {
			diffs = append(diffs, fmt.Sprintf("%s connections:\n got %q\nwant %q", p.name, g, w))
		}
		var gl []api.Listener
		for _, l := range ns.Listeners {
			gl = append(gl, api.Listener{Endpoint: l.Endpoint})
		}
		if gl == nil {
			gl = []api.Listener{}
		}
		if !reflect.DeepEqual(gl, s.listeners[p.inode]) {
			diffs = append(diffs, fmt.Sprintf("%s listeners: got %v want %v", p.name, gl, s.listeners[p.inode]))
		}
		if w := []string{p.v4.String(), p.v6.String()}; !reflect.DeepEqual(ns.IPs, w) {
			diffs = append(diffs, fmt.Sprintf("%s ips: got %v want %v", p.name, ns.IPs, w))
		}
		if !reflect.DeepEqual(ns.PIDs, p.pids) || ns.PIDCount != len(p.pids) {
			diffs = append(diffs, fmt.Sprintf("%s pids: got %v (%d) want %v", p.name, ns.PIDs, ns.PIDCount, p.pids))
		}
	}
	return strings.Join(diffs, "\n")
}

// eventually polls fresh agents until the scenario matches (the kernel
// finishes handshakes and closes asynchronously) and returns the last check.
func (s *scenario) eventually(t *testing.T, m Method) string {
	deadline := time.Now().Add(5 * time.Second)
	for {
		snap := New(Config{Method: m}).Poll()
		d := s.check(snap)
		if d == "" || time.Now().After(deadline) {
			return d
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *scenario) debugSS() string {
	var b strings.Builder
	for _, p := range []*testPod{s.a, s.b, s.c} {
		fmt.Fprintf(&b, "ss in %s:\n%s", p.name, ssRows(p.name))
	}
	return b.String()
}

func uniqueInodes(t *testing.T, snap *api.Snapshot) {
	t.Helper()
	seen := map[uint64]bool{}
	for _, ns := range snap.Namespaces {
		if seen[ns.Inode] {
			t.Errorf("namespace %d read twice", ns.Inode)
		}
		seen[ns.Inode] = true
	}
	if snap.Cost.NamespacesRead != len(snap.Namespaces) {
		t.Errorf("cost.namespacesRead %d, namespaces %d", snap.Cost.NamespacesRead, len(snap.Namespaces))
	}
}

// TestAgentRealNamespaces makes real connections between three pod
// namespaces and checks that the agent (library and HTTP) reports exactly
// them, for both read methods.
func TestAgentRealNamespaces(t *testing.T) {
	s := setupScenario(t)
	// Baseline poll before the short-lived connection.
	ag := New(Config{Method: MethodAuto, Node: "test-node", PollInterval: time.Second})
	if d := s.eventually(t, MethodAuto); d != "" {
		t.Fatalf("before TIME_WAIT:\n%s\n%s", d, s.debugSS())
	}
	first := ag.Poll()
	if d := s.check(first); d != "" {
		t.Fatalf("first poll:\n%s", d)
	}
	for _, p := range []*testPod{s.a, s.b, s.c} {
		ns := findNS(first, p.inode)[0]
		if !ns.FirstSeen || ns.Closed != nil || ns.Counters.Delta != nil || ns.Method != api.MethodNetlink {
			t.Errorf("%s first poll: firstSeen=%v closed=%v delta=%v method=%s", p.name, ns.FirstSeen, ns.Closed, ns.Counters.Delta, ns.Method)
		}
		if !ns.Counters.Valid {
			t.Errorf("%s: counters not read", p.name)
		}
	}
	uniqueInodes(t, first)

	s.makeTimeWait(t)
	for _, m := range []Method{MethodNetlink, MethodProc} {
		if d := s.eventually(t, m); d != "" {
			t.Fatalf("method %s after TIME_WAIT:\n%s\n%s", m, d, s.debugSS())
		}
	}
	second := ag.Poll()
	if d := s.check(second); d != "" {
		t.Fatalf("second poll:\n%s", d)
	}
	uniqueInodes(t, second)
	if testing.Verbose() {
		for _, p := range []*testPod{s.a, s.b, s.c} {
			b, _ := json.MarshalIndent(findNS(second, p.inode)[0], "", "  ")
			t.Logf("%s: %s", p.name, b)
		}
	}
	if second.Method != api.MethodNetlink || second.Node != "test-node" || second.Seq != 2 || second.SincePreviousSeconds <= 0 {
		t.Errorf("snapshot header: %+v", second)
	}

	// Short-lived connection accounting.
	nsA := findNS(second, s.a.inode)[0]
	wantClosed := []api.Flow{{Direction: api.Outbound, Local: api.Endpoint{IP: s.a.v4.String()},
		Remote: api.Endpoint{IP: s.b.v4.String(), Port: 8080}, ClosedSinceLastPoll: 1}}
	if !reflect.DeepEqual(nsA.Closed, wantClosed) {
		t.Errorf("A closed: got %+v want %+v", nsA.Closed, wantClosed)
	}
	if nsA.NewConnections != 1 {
		t.Errorf("A new connections: %d", nsA.NewConnections)
	}
	for _, c := range nsA.Connections {
		if c.New != (c.State == "TIME_WAIT") {
			t.Errorf("A conn %s new=%v", connKey(c), c.New)
		}
	}
	if d := nsA.Counters.Delta; d == nil || d.ActiveOpens != 1 || d.PassiveOpens != 0 || d.UnobservedOpens != 0 {
		t.Errorf("A counter delta: %+v", d)
	}
	nsB := findNS(second, s.b.inode)[0]
	if d := nsB.Counters.Delta; d == nil || d.PassiveOpens != 1 || d.ActiveOpens != 0 || d.UnobservedOpens != 1 {
		// B accepted the connection and it is gone from B entirely: the
		// counters are the only trace of it there.
		t.Errorf("B counter delta: %+v", d)
	}
	if nsB.Closed != nil || nsB.NewConnections != 0 {
		t.Errorf("B closed %+v new %d", nsB.Closed, nsB.NewConnections)
	}
	if second.Cost.SocketsSeen < 9 || second.Cost.WallSeconds <= 0 || second.Cost.PIDsScanned < 4 {
		t.Errorf("cost: %+v", second.Cost)
	}

	// The same snapshot over HTTP on loopback.
	srv, err := NewServer(ag, "s3cret", 0)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	req, _ := http.NewRequest("GET", hs.URL+"/v1/snapshot", nil)
	req.Header.Set("Authorization", "Bearer s3cret")
	resp, err := hs.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var got api.Snapshot
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	if d := s.check(&got); d != "" {
		t.Fatalf("over HTTP:\n%s", d)
	}
	local, _ := EncodeBounded(second, DefaultMaxResponseBytes)
	snapBody, births := splitBirths(t, body)
	if !bytes.Equal(snapBody, local) {
		t.Errorf("HTTP body differs from the library snapshot")
	}
	// Without after/epoch, the births are the last poll's: A's TIME_WAIT.
	if births.After != second.Seq-1 || births.Through != second.Seq || len(births.Polls) != 1 ||
		births.Polls[0].Seq != second.Seq || !reflect.DeepEqual(closedOf(births.Polls[0], s.a.inode), findNS(second, s.a.inode)[0].Closed) {
		t.Errorf("births %+v, want the second poll's closed flows of A", births)
	}
}

func closedOf(p api.PollBirths, inode uint64) []api.Flow {
	for _, ns := range p.Namespaces {
		if ns.Inode == inode {
			return ns.Closed
		}
	}
	return nil
}

// TestNetlinkAndProcAgree reads the same namespaces with sock_diag and
// with /proc/PID/net/tcp{,6} and requires the same listeners and
// connections.
func TestNetlinkAndProcAgree(t *testing.T) {
	s := setupScenario(t)
	s.makeTimeWait(t)
	if d := s.eventually(t, MethodNetlink); d != "" {
		t.Fatalf("%s\n%s", d, s.debugSS())
	}
	nl := New(Config{Method: MethodNetlink}).Poll()
	pr := New(Config{Method: MethodProc}).Poll()
	if nl.Method != api.MethodNetlink || pr.Method != api.MethodProc {
		t.Fatalf("methods %s %s", nl.Method, pr.Method)
	}
	for _, p := range []*testPod{s.a, s.b, s.c} {
		n, q := findNS(nl, p.inode)[0], findNS(pr, p.inode)[0]
		if !reflect.DeepEqual(normConns(n.Connections), normConns(q.Connections)) {
			t.Errorf("%s connections differ:\nnetlink %q\nproc    %q", p.name, normConns(n.Connections), normConns(q.Connections))
		}
		strip := func(ls []api.Listener) []api.Endpoint {
			out := []api.Endpoint{}
			for _, l := range ls {
				out = append(out, l.Endpoint)
			}
			return out
		}
		if !reflect.DeepEqual(strip(n.Listeners), strip(q.Listeners)) {
			t.Errorf("%s listeners differ: %v vs %v", p.name, n.Listeners, q.Listeners)
		}
		if !reflect.DeepEqual(n.IPs, q.IPs) || !reflect.DeepEqual(n.PIDs, q.PIDs) {
			t.Errorf("%s ips/pids differ", p.name)
		}
		for _, l := range n.Listeners {
			if l.Backlog != 4096 && l.Backlog == 0 {
				t.Errorf("%s netlink listener %v has no backlog", p.name, l)
			}
		}
	}
	if len(nl.Errors) != len(pr.Errors) {
		t.Logf("errors: netlink %v proc %v", nl.Errors, pr.Errors)
	}
}

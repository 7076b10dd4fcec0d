package kube

import (
	"fmt"
	"io"
	"maps"
	"net"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	testnetns "github.com/livemap/servicemap/internal/testenv/netns"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/livemap/servicemap/pkg/agent"
	"github.com/livemap/servicemap/pkg/agent/api"
	"github.com/livemap/servicemap/pkg/model"
	"github.com/livemap/servicemap/pkg/store"
)

const pairClusterIP = "10.96.55.10"

// pairIndex is the cluster as the informers would show it: frontend (client
// pod) calls checkout (server pod) through its ClusterIP.
func pairIndex(cli, srv testnetns.Pod) *Index {
	cliPod := pod("shop", "frontend-1", "uid-fe", cli.IP, map[string]string{"app": "frontend"}, "")
	srvPod := pod("shop", "checkout-1", "uid-co", srv.IP, map[string]string{"app": "checkout"}, "")
	return BuildIndex(Objects{
		Services: []*corev1.Service{
			svc("shop", "checkout", pairClusterIP, map[string]string{"app": "checkout"}, corev1.ServicePort{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}),
			svc("shop", "frontend", "10.96.55.11", map[string]string{"app": "frontend"}, corev1.ServicePort{Name: "http", Port: 80, TargetPort: intstr.FromInt32(3000)}),
		},
		EndpointSlices: []*discoveryv1.EndpointSlice{
			slice("shop", "checkout", []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080))}}, srvPod),
			slice("shop", "frontend", []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(3000))}}, cliPod),
		},
		Pods: []*corev1.Pod{cliPod, srvPod},
	}, nil)
}

// pairOnly keeps the pair's namespaces of a snapshot and of the births of
// its poll (the agent walks every namespace of the machine).
func pairOnly(ag *agent.Agent, snap *api.Snapshot, cli, srv testnetns.Pod) *api.Snapshot {
	ours := func(ips []string) bool {
		return slices.ContainsFunc(ips, func(ip string) bool { return ip == cli.IP || ip == srv.IP })
	}
	out := &api.Snapshot{SchemaVersion: snap.SchemaVersion, Epoch: snap.Epoch, Seq: snap.Seq, TakenAt: snap.TakenAt, Births: &api.Births{}}
	for _, ns := range snap.Namespaces {
		if ours(ns.IPs) {
			out.Namespaces = append(out.Namespaces, ns)
		}
	}
	polls, _ := ag.Births(snap.Seq-1, snap.Seq, snap.Seq-1)
	for _, pb := range polls {
		q := pb
		q.Namespaces = nil
		for _, ns := range pb.Namespaces {
			if ours(ns.IPs) {
				q.Namespaces = append(q.Namespaces, ns)
			}
		}
		out.Births.Polls = append(out.Births.Polls, q)
	}
	return out
}

// TestRealAgentThroughClusterIP runs the real node agent over two real
// network namespaces ("pods" joined by a veth pair). The client namespace
// DNATs a ClusterIP to the server pod with iptables, as kube-proxy does, so
// the client's socket shows ClusterIP:80 and the server's podIP:8080. One
// long-lived connection seen from both ends must be one connection on one
// edge; three short connections closed by the client count as closed
// births.
func TestRealAgentThroughClusterIP(t *testing.T) {
	testnetns.RequireRoot(t)
	cli, srv := testnetns.PodPair(t, "10.245")
	cliIP, srvIP := cli.IP, srv.IP
	const clusterIP = pairClusterIP
	cli.DNAT(t, clusterIP, 80, srvIP+":8080")

	ln := srv.Listen(t, ":8080")
	closed := make(chan struct{}, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(io.Discard, c); c.Close(); closed <- struct{}{} }()
		}
	}()
	dial := func() net.Conn { return cli.Dial(t, clusterIP+":80") }
	long := dial()
	t.Cleanup(func() { long.Close() })

	ag := agent.New(agent.Config{Node: "node-a", PollInterval: time.Second})
	ag.Poll() // baseline: closed births are counted from the next poll
	for i := 0; i < 3; i++ {
		c := dial()
		c.Close() // the client closes first and keeps the TIME_WAIT
		select {
		case <-closed:
		case <-time.After(5 * time.Second):
			t.Fatal("server did not see the short connection close")
		}
	}
	time.Sleep(50 * time.Millisecond) // the client's final ACK state settles
	snap := ag.Poll()

	x := pairIndex(cli, srv)

	// Show what the agent really saw in the two namespaces.
	var mine []api.Namespace
	for _, ns := range snap.Namespaces {
		for _, ip := range ns.IPs {
			if ip == cliIP || ip == srvIP {
				mine = append(mine, ns)
				for _, c := range ns.Connections {
					t.Logf("%s: %s:%d -> %s:%d %s %s new=%v", ip, c.Local.IP, c.Local.Port, c.Remote.IP, c.Remote.Port, c.State, c.Direction, c.New)
				}
				for _, f := range ns.Closed {
					t.Logf("%s: closed %s %s -> %s:%d x%d", ip, f.Direction, f.Local.IP, f.Remote.IP, f.Remote.Port, f.ClosedSinceLastPoll)
				}
			}
		}
	}
	if len(mine) != 2 {
		t.Fatalf("agent saw %d of the 2 test namespaces", len(mine))
	}
	st := store.New(store.Options{Retention: time.Hour})
	b := store.NewBatch(model.SourceNetwork)
	cs := AddSnapshots(b, x, []*api.Snapshot{pairOnly(ag, snap, cli, srv)})
	st.Apply(b)
	t.Logf("convert stats: %+v", cs)
	edges, _ := st.Snapshot(snap.TakenAt.Add(-time.Minute), snap.TakenAt.Add(time.Minute), model.SourceNetwork)
	if len(edges) != 1 || edges[0].Key != (model.EdgeKey{Source: "frontend", Target: "checkout"}) {
		t.Fatalf("edges = %+v, want only frontend->checkout", edges)
	}
	if got := edges[0].Stats.Connections; got != 4 {
		t.Errorf("frontend->checkout connections = %d, want 4 (1 long-lived seen from both ends + 3 closed births)", got)
	}
	if cs.Duplicates != 1 || cs.ClosedBirths != 3 {
		t.Errorf("stats = %+v, want 1 duplicate (server side of the long connection) and 3 closed births", cs)
	}
	if edges[0].Info.Protocol != "HTTP" {
		t.Errorf("protocol = %q, want HTTP", edges[0].Info.Protocol)
	}

	// The edge dies: the long connection closes (seen ESTABLISHED before, so
	// not a birth) and no new one opens. The TIME_WAIT rows still in the
	// table must not keep the edge alive.
	long.Close()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("server did not see the long connection close")
	}
	time.Sleep(50 * time.Millisecond)
	snap3 := ag.Poll()
	var mine3 []api.Namespace
	timeWaits := 0
	for _, ns := range snap3.Namespaces {
		for _, ip := range ns.IPs {
			if ip == cliIP || ip == srvIP {
				mine3 = append(mine3, ns)
				for _, c := range ns.Connections {
					if c.State == "TIME_WAIT" {
						timeWaits++
					}
				}
			}
		}
	}
	if timeWaits < 3 {
		t.Fatalf("expected the TIME_WAIT rows to still be in the table, saw %d", timeWaits)
	}
	b3 := store.NewBatch(model.SourceNetwork)
	cs3 := AddSnapshots(b3, x, []*api.Snapshot{pairOnly(ag, snap3, cli, srv)})
	if b3.Len() != 0 {
		t.Errorf("a dead edge with only TIME_WAIT rows recorded %d cells (stats %+v)", b3.Len(), cs3)
	}
}

// waitState polls ss in a namespace until a socket matching filter (e.g.
// "dport = :4242") is in the state (e.g. "last-ack").
func waitState(t *testing.T, ns, state, filter string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, _ := exec.Command("ip", "netns", "exec", ns, "ss", "-tanH", "state", state, filter).CombinedOutput()
		if strings.TrimSpace(string(out)) != "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s socket matching %q in %s", state, filter, ns)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRealAgentClosingEndCountedOnce: a connection born and closed between
// two agent polls whose closing end is held in LAST_ACK (its peer's final
// ACK is dropped by iptables) shows up as a TIME_WAIT birth on one side and
// a LAST_ACK row on the other. It is one connection and must count once,
// whichever side closed first:
//   - the client closes first: client TIME_WAIT (outbound birth, through
//     the ClusterIP), server LAST_ACK (inbound row);
//   - the server closes first: server TIME_WAIT (inbound birth), client
//     LAST_ACK (outbound row).
//
// Before the fix the LAST_ACK row was counted as a live connection next to
// the birth: 4 instead of 2.
func TestRealAgentClosingEndCountedOnce(t *testing.T) {
	testnetns.RequireRoot(t)
	cli, srv := testnetns.PodPair(t, "10.245")
	cli.DNAT(t, pairClusterIP, 80, srv.IP+":8080")
	ln := srv.Listen(t, "0.0.0.0:8080")
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	dial := func(addr string) (net.Conn, net.Conn) {
		c := cli.Dial(t, addr)
		t.Cleanup(func() { c.Close() })
		select {
		case s := <-accepted:
			t.Cleanup(func() { s.Close() })
			return c, s
		case <-time.After(5 * time.Second):
			t.Fatal("server did not accept")
		}
		return nil, nil
	}
	drop := func(ns string, args ...string) {
		testnetns.Sh(t, append([]string{"ip", "netns", "exec", ns, "iptables", "-A", "INPUT", "-p", "tcp"}, append(args, "-j", "DROP")...)...)
	}

	ag := agent.New(agent.Config{Node: "node-a", PollInterval: time.Second})
	ag.Poll() // baseline

	// 1. The client closes first, through the ClusterIP; the server's
	// final ACK from the client is dropped, so the server stays LAST_ACK.
	c1, s1 := dial(pairClusterIP + ":80")
	port1 := c1.LocalAddr().(*net.TCPAddr).Port
	c1.Close()
	waitState(t, srv.NS, "close-wait", fmt.Sprintf("dport = :%d", port1))
	drop(srv.NS, "-s", cli.IP, "--sport", fmt.Sprint(port1))
	s1.Close()
	waitState(t, srv.NS, "last-ack", fmt.Sprintf("dport = :%d", port1))
	waitState(t, cli.NS, "time-wait", fmt.Sprintf("sport = :%d", port1))

	// 2. The server closes first, to the pod IP; the client's final ACK
	// from the server is dropped, so the client stays LAST_ACK.
	c2, s2 := dial(srv.IP + ":8080")
	port2 := c2.LocalAddr().(*net.TCPAddr).Port
	s2.Close()
	waitState(t, cli.NS, "close-wait", fmt.Sprintf("sport = :%d", port2))
	drop(cli.NS, "-s", srv.IP, "--sport", "8080", "--dport", fmt.Sprint(port2))
	c2.Close()
	waitState(t, cli.NS, "last-ack", fmt.Sprintf("sport = :%d", port2))
	waitState(t, srv.NS, "time-wait", fmt.Sprintf("dport = :%d", port2))

	snap := ag.Poll()
	got := pairOnly(ag, snap, cli, srv)
	states := map[string]int{}
	for _, ns := range got.Namespaces {
		for _, c := range ns.Connections {
			states[c.Direction+" "+c.State]++
			t.Logf("%v: %s:%d -> %s:%d %s %s new=%v", ns.IPs, c.Local.IP, c.Local.Port, c.Remote.IP, c.Remote.Port, c.State, c.Direction, c.New)
		}
	}
	want := map[string]int{"outbound TIME_WAIT": 1, "inbound LAST_ACK": 1, "inbound TIME_WAIT": 1, "outbound LAST_ACK": 1}
	if !maps.Equal(states, want) {
		t.Fatalf("agent saw %v, want %v", states, want)
	}
	b := store.NewBatch(model.SourceNetwork)
	cs := AddSnapshots(b, pairIndex(cli, srv), []*api.Snapshot{got})
	st := store.New(store.Options{Retention: time.Hour})
	st.Apply(b)
	edges, _ := st.Snapshot(snap.TakenAt.Add(-time.Minute), snap.TakenAt.Add(time.Minute), model.SourceNetwork)
	if len(edges) != 1 || edges[0].Key != (model.EdgeKey{Source: "frontend", Target: "checkout"}) {
		t.Fatalf("edges = %+v, want only frontend->checkout", edges)
	}
	if n := edges[0].Stats.Connections; n != 2 {
		t.Errorf("frontend->checkout = %d connections, want 2 (two closed connections, once each); stats %+v", n, cs)
	}
	if cs.ClosedBirths != 2 || cs.ClosingSides != 2 || cs.Counted != 0 {
		t.Errorf("stats = %+v, want 2 closed births, 2 LAST_ACK ends not counted, 0 live rows", cs)
	}
}

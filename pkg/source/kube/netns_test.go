package kube

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
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

func sh(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", args, err, out)
	}
}

// inNetNS runs fn inside the named namespace; sockets made by fn stay there.
func inNetNS(t *testing.T, name string, fn func() error) {
	t.Helper()
	if err := testnetns.Do(name, fn); err != nil {
		t.Fatal(err)
	}
}

// podPair is two real network namespaces ("pods") joined by a veth pair,
// each with a process in it so the agent finds it walking /proc. The
// client namespace DNATs ClusterIP:80 to the server's :8080 with iptables,
// as kube-proxy does.
type podPair struct {
	cliNS, srvNS, cliIP, srvIP string
}

const pairClusterIP = "10.96.55.10"

func newPodPair(t *testing.T) *podPair {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	for _, bin := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("needs %s", bin)
		}
	}
	var rb [5]byte
	rand.Read(rb[:])
	base := fmt.Sprintf("smk%d-%s", os.Getpid(), hex.EncodeToString(rb[:4]))
	subnet := int(rb[4])%200 + 10
	p := &podPair{cliNS: base + "-a", srvNS: base + "-b",
		cliIP: fmt.Sprintf("10.245.%d.2", subnet), srvIP: fmt.Sprintf("10.245.%d.3", subnet)}
	for _, n := range []string{p.cliNS, p.srvNS} {
		sh(t, "ip", "netns", "add", n)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", n).Run() })
	}
	sh(t, "ip", "-n", p.cliNS, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", p.srvNS)
	for n, ip := range map[string]string{p.cliNS: p.cliIP, p.srvNS: p.srvIP} {
		sh(t, "ip", "-n", n, "link", "set", "lo", "up")
		sh(t, "ip", "-n", n, "link", "set", "eth0", "up")
		sh(t, "ip", "-n", n, "addr", "add", ip+"/24", "dev", "eth0")
		sh(t, "ip", "-n", n, "route", "add", "default", "dev", "eth0")
	}
	sh(t, "ip", "netns", "exec", p.cliNS, "iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-d", pairClusterIP, "--dport", "80",
		"-j", "DNAT", "--to-destination", p.srvIP+":8080")
	for _, n := range []string{p.cliNS, p.srvNS} {
		var want syscall.Stat_t
		if err := syscall.Stat("/run/netns/"+n, &want); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("ip", "netns", "exec", n, "sleep", "600")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		deadline := time.Now().Add(5 * time.Second)
		for {
			var st syscall.Stat_t
			if syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid), &st) == nil && st.Ino == want.Ino {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("sleep did not enter %s", n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return p
}

// mine keeps the namespaces of the pair from a snapshot and from its births.
func (p *podPair) mine(snap *api.Snapshot, births []api.PollBirths) *api.Snapshot {
	ours := func(ips []string) bool {
		return slices.ContainsFunc(ips, func(ip string) bool { return ip == p.cliIP || ip == p.srvIP })
	}
	out := &api.Snapshot{SchemaVersion: snap.SchemaVersion, Epoch: snap.Epoch, Seq: snap.Seq, TakenAt: snap.TakenAt, Births: &api.Births{}}
	for _, ns := range snap.Namespaces {
		if ours(ns.IPs) {
			out.Namespaces = append(out.Namespaces, ns)
		}
	}
	for _, pb := range births {
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

// index is the cluster as the informers would show it: frontend (client
// pod) calls checkout (server pod) through its ClusterIP.
func (p *podPair) index() *Index {
	cliPod := pod("shop", "frontend-1", "uid-fe", p.cliIP, map[string]string{"app": "frontend"}, "")
	srvPod := pod("shop", "checkout-1", "uid-co", p.srvIP, map[string]string{"app": "checkout"}, "")
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

// TestRealAgentThroughClusterIP runs the real node agent over two real
// network namespaces ("pods" joined by a veth pair). The client namespace
// DNATs a ClusterIP to the server pod with iptables, as kube-proxy does, so
// the client's socket shows ClusterIP:80 and the server's podIP:8080. One
// long-lived connection seen from both ends must be one connection on one
// edge; three short connections closed by the client count as closed
// births.
func TestRealAgentThroughClusterIP(t *testing.T) {
	p := newPodPair(t)
	cliNS, srvNS, cliIP, srvIP, clusterIP := p.cliNS, p.srvNS, p.cliIP, p.srvIP, pairClusterIP

	var ln net.Listener
	inNetNS(t, srvNS, func() (err error) { ln, err = net.Listen("tcp", ":8080"); return err })
	t.Cleanup(func() { ln.Close() })
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
	dial := func() net.Conn {
		var c net.Conn
		inNetNS(t, cliNS, func() (err error) {
			c, err = net.DialTimeout("tcp", clusterIP+":80", 5*time.Second)
			return err
		})
		return c
	}
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

	x := p.index()

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
	cs := AddSnapshots(b, x, []*api.Snapshot{p.mine(snap, birthsOf(ag, snap.Seq-1, snap.Seq))})
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
	cs3 := AddSnapshots(b3, x, []*api.Snapshot{p.mine(snap3, birthsOf(ag, snap3.Seq-1, snap3.Seq))})
	if b3.Len() != 0 {
		t.Errorf("a dead edge with only TIME_WAIT rows recorded %d cells (stats %+v)", b3.Len(), cs3)
	}
}

func birthsOf(ag *agent.Agent, after, through uint64) []api.PollBirths {
	polls, _ := ag.Births(after, through, after)
	return polls
}

// waitState polls ss in a namespace until a socket with the local port
// (sport) or remote port (dport) is in the state, e.g. "last-ack".
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
	p := newPodPair(t)
	var ln net.Listener
	inNetNS(t, p.srvNS, func() (err error) { ln, err = net.Listen("tcp4", ":8080"); return err })
	t.Cleanup(func() { ln.Close() })
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
		var c net.Conn
		inNetNS(t, p.cliNS, func() (err error) { c, err = net.DialTimeout("tcp4", addr, 5*time.Second); return err })
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
		sh(t, append([]string{"ip", "netns", "exec", ns, "iptables", "-A", "INPUT", "-p", "tcp"}, append(args, "-j", "DROP")...)...)
	}

	ag := agent.New(agent.Config{Node: "node-a", PollInterval: time.Second})
	ag.Poll() // baseline

	// 1. The client closes first, through the ClusterIP; the server's
	// final ACK from the client is dropped, so the server stays LAST_ACK.
	c1, s1 := dial(pairClusterIP + ":80")
	port1 := c1.LocalAddr().(*net.TCPAddr).Port
	c1.Close()
	waitState(t, p.srvNS, "close-wait", fmt.Sprintf("dport = :%d", port1))
	drop(p.srvNS, "-s", p.cliIP, "--sport", fmt.Sprint(port1))
	s1.Close()
	waitState(t, p.srvNS, "last-ack", fmt.Sprintf("dport = :%d", port1))
	waitState(t, p.cliNS, "time-wait", fmt.Sprintf("sport = :%d", port1))

	// 2. The server closes first, to the pod IP; the client's final ACK
	// from the server is dropped, so the client stays LAST_ACK.
	c2, s2 := dial(p.srvIP + ":8080")
	port2 := c2.LocalAddr().(*net.TCPAddr).Port
	s2.Close()
	waitState(t, p.cliNS, "close-wait", fmt.Sprintf("sport = :%d", port2))
	drop(p.cliNS, "-s", p.srvIP, "--sport", "8080", "--dport", fmt.Sprint(port2))
	c2.Close()
	waitState(t, p.cliNS, "last-ack", fmt.Sprintf("sport = :%d", port2))
	waitState(t, p.srvNS, "time-wait", fmt.Sprintf("dport = :%d", port2))

	snap := ag.Poll()
	got := p.mine(snap, birthsOf(ag, snap.Seq-1, snap.Seq))
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
	cs := AddSnapshots(b, p.index(), []*api.Snapshot{got})
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

package kube

import (
	"io"
	"net"
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
	const clusterIP = "10.96.55.10"
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

	// The cluster as the informers would show it.
	cliPod := pod("shop", "frontend-1", "uid-fe", cliIP, map[string]string{"app": "frontend"}, "")
	srvPod := pod("shop", "checkout-1", "uid-co", srvIP, map[string]string{"app": "checkout"}, "")
	x := BuildIndex(Objects{
		Services: []*corev1.Service{
			svc("shop", "checkout", clusterIP, map[string]string{"app": "checkout"}, corev1.ServicePort{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}),
			svc("shop", "frontend", "10.96.55.11", map[string]string{"app": "frontend"}, corev1.ServicePort{Name: "http", Port: 80, TargetPort: intstr.FromInt32(3000)}),
		},
		EndpointSlices: []*discoveryv1.EndpointSlice{
			slice("shop", "checkout", []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080))}}, srvPod),
			slice("shop", "frontend", []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(3000))}}, cliPod),
		},
		Pods: []*corev1.Pod{cliPod, srvPod},
	}, nil)

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
	cs := AddSnapshots(b, x, []*api.Snapshot{{SchemaVersion: 1, TakenAt: snap.TakenAt, Namespaces: mine}})
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
	cs3 := AddSnapshots(b3, x, []*api.Snapshot{{SchemaVersion: 1, TakenAt: snap3.TakenAt, Namespaces: mine3}})
	if b3.Len() != 0 {
		t.Errorf("a dead edge with only TIME_WAIT rows recorded %d cells (stats %+v)", b3.Len(), cs3)
	}
}

package kube

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/livemap/servicemap/pkg/agent/api"
	"github.com/livemap/servicemap/pkg/config"
	"github.com/livemap/servicemap/pkg/model"
	"github.com/livemap/servicemap/pkg/store"
)

// Large cluster: 1,000 Services (Deployment → ReplicaSet → 5 pods each, one
// EndpointSlice each) in 10 namespaces, 5,000 pods on 20 nodes, and 50,000
// live connections, each seen from both ends (100,000 socket rows): 80 %
// through a ClusterIP, 10 % straight to a pod IP, 10 % to an external CIDR
// (only the client's row). Snapshots are one per node.
const (
	benchServices = 1000
	benchPodsPer  = 5
	benchNodes    = 20
	benchConns    = 50000
)

type bigCluster struct {
	objs  Objects
	cidrs []config.ExternalCIDR
	snaps []*api.Snapshot
	rows  int
}

func newBigCluster() *bigCluster {
	r := rand.New(rand.NewPCG(1, 2))
	bc := &bigCluster{cidrs: []config.ExternalCIDR{{Name: "payments-psp", CIDR: "203.0.113.0/24"}, {Name: "partners", CIDR: "198.51.100.0/24"}}}
	o := &bc.objs
	for n := 0; n < benchNodes; n++ {
		o.Nodes = append(o.Nodes, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("node-%d", n)},
			Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: fmt.Sprintf("192.168.0.%d", n+1)}}}})
	}
	for n := 0; n < 10; n++ {
		o.Namespaces = append(o.Namespaces, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("ns-%d", n)}})
	}
	type podAt struct {
		pod  *corev1.Pod
		node int
	}
	var pods []podAt
	svcIPs := make([]string, benchServices)
	for s := 0; s < benchServices; s++ {
		ns, name := fmt.Sprintf("ns-%d", s%10), fmt.Sprintf("svc-%d", s)
		lbl := map[string]string{"app": name}
		svcIPs[s] = fmt.Sprintf("10.96.%d.%d", s/250, s%250+1)
		o.Services = append(o.Services, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: corev1.ServiceSpec{ClusterIP: svcIPs[s], Selector: lbl, Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}}}})
		o.Deployments = append(o.Deployments, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}})
		o.ReplicaSets = append(o.ReplicaSets, &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-rs",
			OwnerReferences: []metav1.OwnerReference{{Kind: "Deployment", Name: name, Controller: ptr(true)}}}})
		es := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-x", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
			Ports: []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080))}}}
		for i := 0; i < benchPodsPer; i++ {
			k := s*benchPodsPer + i
			ip := fmt.Sprintf("10.244.%d.%d", k/250, k%250+1)
			p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("%s-rs-%d", name, i), UID: types.UID(fmt.Sprintf("uid-%d", k)), Labels: lbl,
				OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: name + "-rs", Controller: ptr(true)}}},
				Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip}}
			o.Pods = append(o.Pods, p)
			pods = append(pods, podAt{p, k % benchNodes})
			es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{ip},
				TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: p.Name, UID: p.UID}})
		}
		o.EndpointSlices = append(o.EndpointSlices, es)
	}
	// One namespace per pod, per node.
	at := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	nss := make([]*api.Namespace, len(pods))
	for n := 0; n < benchNodes; n++ {
		bc.snaps = append(bc.snaps, &api.Snapshot{SchemaVersion: 1, Node: fmt.Sprintf("node-%d", n), Seq: 1, TakenAt: at})
	}
	for _, p := range pods {
		snap := bc.snaps[p.node]
		snap.Namespaces = append(snap.Namespaces, api.Namespace{PodUID: string(p.pod.UID), IPs: []string{p.pod.Status.PodIP}})
	}
	seen := make([]int, benchNodes)
	for i, p := range pods { // the slices are complete: pointers stay valid
		nss[i] = &bc.snaps[p.node].Namespaces[seen[p.node]]
		seen[p.node]++
	}
	nextPort := make([]uint16, len(pods))
	otherService := func(ci int) int { // never the client's own service (a self-call is no edge)
		for {
			if s := r.IntN(benchServices); s != ci/benchPodsPer {
				return s
			}
		}
	}
	for c := 0; c < benchConns; c++ {
		ci := r.IntN(len(pods))
		cli := pods[ci].pod
		cport := 20000 + nextPort[ci] // unique per client
		nextPort[ci]++
		switch k := r.IntN(10); {
		case k < 8: // through a ClusterIP
			s := otherService(ci)
			si := s*benchPodsPer + r.IntN(benchPodsPer)
			nss[ci].Connections = append(nss[ci].Connections, conn(cli.Status.PodIP, svcIPs[s], cport, 80, "ESTABLISHED", api.Outbound))
			nss[si].Connections = append(nss[si].Connections, conn(pods[si].pod.Status.PodIP, cli.Status.PodIP, 8080, cport, "ESTABLISHED", api.Inbound))
			bc.rows += 2
		case k < 9: // straight to a pod
			si := otherService(ci)*benchPodsPer + r.IntN(benchPodsPer)
			nss[ci].Connections = append(nss[ci].Connections, conn(cli.Status.PodIP, pods[si].pod.Status.PodIP, cport, 8080, "ESTABLISHED", api.Outbound))
			nss[si].Connections = append(nss[si].Connections, conn(pods[si].pod.Status.PodIP, cli.Status.PodIP, 8080, cport, "ESTABLISHED", api.Inbound))
			bc.rows += 2
		default: // to an external partner
			nss[ci].Connections = append(nss[ci].Connections, conn(cli.Status.PodIP, fmt.Sprintf("203.0.113.%d", r.IntN(250)+1), cport, 443, "ESTABLISHED", api.Outbound))
			bc.rows++
		}
	}
	return bc
}

// refresh is what Source.Refresh does after fetching: index the cluster,
// describe every Service, turn the snapshots into edges.
func (bc *bigCluster) refresh() (*store.Batch, ConvertStats) {
	x := BuildIndex(bc.objs, bc.cidrs)
	b := store.NewBatch(model.SourceNetwork)
	for _, s := range x.Services() {
		b.AddNode(x.ServiceNode(s))
	}
	return b, AddSnapshots(b, x, bc.snaps)
}

func TestBigClusterRefreshCounts(t *testing.T) {
	bc := newBigCluster()
	_, st := bc.refresh()
	// every connection counted once, the server side of the in-cluster ones as a duplicate
	if st.Counted != benchConns || st.Counted+st.Duplicates != bc.rows || st.UnknownLocal != 0 || st.Noise != 0 {
		t.Fatalf("stats %+v for %d connections / %d rows", st, benchConns, bc.rows)
	}
}

// BenchmarkRefresh: a whole refresh of the large cluster (index + nodes +
// 100k rows → edges). index-MB is the heap the Index keeps.
func BenchmarkRefresh(b *testing.B) {
	bc := newBigCluster()
	indexHeap := heapOf(func() any { return BuildIndex(bc.objs, bc.cidrs) })
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cpuMeter()
	for i := 0; i < b.N; i++ {
		bc.refresh()
	}
	b.StopTimer()
	cpu.report(b)
	b.ReportMetric(indexHeap/1e6, "index-MB")
}

func BenchmarkBuildIndex(b *testing.B) {
	bc := newBigCluster()
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cpuMeter()
	for i := 0; i < b.N; i++ {
		BuildIndex(bc.objs, bc.cidrs)
	}
	cpu.report(b)
}

// remotes are the remote addresses of every outbound row.
func (bc *bigCluster) remotes() []netip.AddrPort {
	var out []netip.AddrPort
	for _, s := range bc.snaps {
		for _, ns := range s.Namespaces {
			for _, c := range ns.Connections {
				if c.Direction == api.Outbound {
					out = append(out, netip.AddrPortFrom(netip.MustParseAddr(c.Remote.IP), c.Remote.Port))
				}
			}
		}
	}
	return out
}

// BenchmarkResolve: the 50,000 remote addresses through the Index, per op.
func BenchmarkResolve(b *testing.B) {
	bc := newBigCluster()
	x := BuildIndex(bc.objs, bc.cidrs)
	rs := bc.remotes()
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cpuMeter()
	for i := 0; i < b.N; i++ {
		for _, r := range rs {
			x.Resolve(r.Addr(), r.Port())
		}
	}
	cpu.report(b)
}

// BenchmarkResolveLinearScan is the simple alternative: no index, each
// address compared with every Service's ClusterIP, then every pod's IP, then
// the CIDR rules — the same answers (TestLinearScanAgrees).
func BenchmarkResolveLinearScan(b *testing.B) {
	bc := newBigCluster()
	rs := bc.remotes()
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cpuMeter()
	for i := 0; i < b.N; i++ {
		for _, r := range rs {
			linearResolve(&bc.objs, bc.cidrs, r.Addr())
		}
	}
	cpu.report(b)
}

func linearResolve(o *Objects, cidrs []config.ExternalCIDR, ip netip.Addr) string {
	s := ip.String()
	for _, svc := range o.Services {
		if svc.Spec.ClusterIP == s {
			return baseServiceID(svc)
		}
	}
	for _, p := range o.Pods {
		if p.Status.PodIP == s {
			for _, es := range o.EndpointSlices {
				for _, ep := range es.Endpoints {
					if ep.TargetRef != nil && ep.TargetRef.Name == p.Name && ep.TargetRef.Namespace == p.Namespace {
						return es.Labels[discoveryv1.LabelServiceName]
					}
				}
			}
			return p.Name
		}
	}
	for _, c := range cidrs {
		if pr, err := netip.ParsePrefix(c.CIDR); err == nil && pr.Contains(ip) {
			return c.Name
		}
	}
	return s
}

func TestLinearScanAgrees(t *testing.T) {
	bc := newBigCluster()
	x := BuildIndex(bc.objs, bc.cidrs)
	rs := bc.remotes()
	for _, r := range rs[:2000] {
		got, _ := x.Resolve(r.Addr(), r.Port())
		if want := linearResolve(&bc.objs, bc.cidrs, r.Addr()); got.ID != want {
			t.Fatalf("%v: index %q, linear scan %q", r, got.ID, want)
		}
	}
}

// heapOf is the live heap that what f returns keeps.
func heapOf(f func() any) float64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	v := f()
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(v)
	return float64(after.HeapAlloc) - float64(before.HeapAlloc)
}

// cpuMeter measures the process's CPU time (user + system, GC included),
// steadier than wall time on a shared machine.
type cpuStart time.Duration

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func cpuMeter() cpuStart { return cpuStart(cpuTime()) }

func (c cpuStart) report(b *testing.B) {
	b.ReportMetric(float64(cpuTime()-time.Duration(c))/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
}

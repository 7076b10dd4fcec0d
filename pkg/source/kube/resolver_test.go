package kube

import (
	"net/netip"
	"reflect"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/livemap/servicemap/pkg/agent/api"
	"github.com/livemap/servicemap/pkg/config"
	"github.com/livemap/servicemap/pkg/model"
	"github.com/livemap/servicemap/pkg/store"
)

func ptr[T any](v T) *T { return &v }

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func svc(ns, name, clusterIP string, sel map[string]string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.ServiceSpec{ClusterIP: clusterIP, Selector: sel, Ports: ports},
	}
}

func pod(ns, name, uid, ip string, lbl map[string]string, owner string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(uid), Labels: lbl, CreationTimestamp: metav1.NewTime(t0)},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip},
	}
	if owner != "" {
		p.OwnerReferences = []metav1.OwnerReference{{Kind: "ReplicaSet", Name: owner, Controller: ptr(true)}}
	}
	return p
}

func slice(ns, svcName string, ports []discoveryv1.EndpointPort, pods ...*corev1.Pod) *discoveryv1.EndpointSlice {
	es := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: svcName + "-x", Labels: map[string]string{discoveryv1.LabelServiceName: svcName}},
		Ports:      ports,
	}
	for _, p := range pods {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
			Addresses: []string{p.Status.PodIP},
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: p.Namespace, Name: p.Name, UID: p.UID},
		})
	}
	return es
}

// world: frontend → checkout (ClusterIP 10.96.0.20:80 → 8080, named port
// "grpc-api") and an external payments CIDR.
func world() (Objects, []config.ExternalCIDR) {
	fe := pod("shop", "frontend-abc-1", "uid-fe", "10.244.1.5", map[string]string{"app": "frontend"}, "frontend-abc")
	co := pod("shop", "checkout-def-1", "uid-co", "10.244.2.7", map[string]string{"app": "checkout"}, "checkout-def")
	checkout := svc("shop", "checkout", "10.96.0.20", map[string]string{"app": "checkout"},
		corev1.ServicePort{Name: "grpc-api", Port: 80, TargetPort: intstr.FromString("api"), Protocol: corev1.ProtocolTCP})
	checkout.Annotations = map[string]string{AnnotationCircuitBreaker: "consecutive5xx=5", AnnotationRetryPolicy: "attempts=3", AnnotationTeam: "payments-team"}
	checkout.Labels = map[string]string{LabelTier: "1"}
	frontend := svc("shop", "frontend", "10.96.0.10", map[string]string{"app": "frontend"},
		corev1.ServicePort{Name: "http", Port: 80, TargetPort: intstr.FromInt32(3000)})
	frontend.Labels = map[string]string{LabelAppName: "web-frontend"}
	deploy := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "checkout"}}
	deploy.Spec.Template.Annotations = map[string]string{AnnotationRestartedAt: t0.Add(time.Hour).Format(time.RFC3339)}
	rsOld := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "checkout-old", CreationTimestamp: metav1.NewTime(t0.Add(-48 * time.Hour)),
		OwnerReferences: []metav1.OwnerReference{{Kind: "Deployment", Name: "checkout", Controller: ptr(true)}}}}
	rsNew := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "checkout-def", CreationTimestamp: metav1.NewTime(t0.Add(2 * time.Hour)),
		OwnerReferences: []metav1.OwnerReference{{Kind: "Deployment", Name: "checkout", Controller: ptr(true)}}}}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.0.2.10"}}}}
	return Objects{
			Services: []*corev1.Service{checkout, frontend},
			EndpointSlices: []*discoveryv1.EndpointSlice{
				slice("shop", "checkout", []discoveryv1.EndpointPort{{Name: ptr("grpc-api"), Port: ptr(int32(8080))}}, co),
				slice("shop", "frontend", []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(3000))}}, fe),
			},
			Pods:        []*corev1.Pod{fe, co},
			Nodes:       []*corev1.Node{node},
			ReplicaSets: []*appsv1.ReplicaSet{rsOld, rsNew},
			Deployments: []*appsv1.Deployment{deploy},
		}, []config.ExternalCIDR{
			{Name: "corp-network", CIDR: "203.0.0.0/8"},
			{Name: "payments-provider", CIDR: "203.0.113.0/24"},
		}
}

func TestResolve(t *testing.T) {
	o, cidrs := world()
	x := BuildIndex(o, cidrs)
	for _, tc := range []struct {
		ip         string
		port       uint16
		id         string
		kind       model.NodeKind
		serverPort uint16
		proto      string
	}{
		{"10.96.0.20", 80, "checkout", model.KindService, 8080, "gRPC"}, // ClusterIP, named targetPort via slice
		{"10.244.2.7", 8080, "checkout", model.KindService, 8080, "gRPC"},
		{"10.96.0.10", 80, "web-frontend", model.KindService, 3000, "HTTP"}, // label override
		{"10.244.1.5", 3000, "web-frontend", model.KindService, 3000, "HTTP"},
		{"192.0.2.10", 10250, "node:node-a", model.KindHost, 10250, "TCP"},
		{"203.0.113.9", 443, "payments-provider", model.KindExternal, 443, "TCP"}, // most specific CIDR
		{"203.1.2.3", 443, "corp-network", model.KindExternal, 443, "TCP"},
		{"8.8.8.8", 53, "8.8.8.8", model.KindExternal, 53, "TCP"},
		{"::ffff:10.96.0.20", 80, "checkout", model.KindService, 8080, "gRPC"},
	} {
		got, ok := x.Resolve(netip.MustParseAddr(tc.ip), tc.port)
		if !ok || got.ID != tc.id || got.Kind != tc.kind || got.ServerPort != tc.serverPort || Protocol(got.Port) != tc.proto {
			t.Errorf("Resolve(%s:%d) = %+v ok=%v proto=%s; want id=%s kind=%s serverPort=%d proto=%s", tc.ip, tc.port, got, ok, Protocol(got.Port), tc.id, tc.kind, tc.serverPort, tc.proto)
		}
	}
	if _, ok := x.Resolve(netip.MustParseAddr("127.0.0.1"), 80); ok {
		t.Error("loopback resolved")
	}
	// The pod's owner is followed through the ReplicaSet to the Deployment.
	if k, n := x.Workload(o.Pods[1]); k != "Deployment" || n != "checkout" {
		t.Errorf("workload = %s/%s", k, n)
	}
	n := x.ServiceNode(o.Services[0])
	if n.ID != "checkout" || n.Namespace != "shop" || n.Team != "payments-team" || n.Tier != "1" || !n.LastDeploy.Equal(t0.Add(2*time.Hour)) {
		t.Errorf("service node = %+v", n)
	}
	tgt, _ := x.Resolve(netip.MustParseAddr("10.96.0.20"), 80)
	if info := x.EdgeInfoFor(tgt); info.CircuitBreaker != "consecutive5xx=5" || info.RetryPolicy != "attempts=3" || info.Protocol != "gRPC" || info.OwnerTeam != "payments-team" {
		t.Errorf("edge info = %+v", info)
	}
}

func TestPodNodeIDRules(t *testing.T) {
	p := pod("ns", "lonely-1", "u1", "10.0.0.1", map[string]string{LabelAppName: "lonely"}, "")
	q := pod("ns", "worker-7c9-1", "u2", "10.0.0.2", nil, "worker-7c9")
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "worker-7c9",
		OwnerReferences: []metav1.OwnerReference{{Kind: "Deployment", Name: "worker", Controller: ptr(true)}}}}
	r := pod("ns", "bare", "u3", "10.0.0.3", nil, "")
	a := pod("ns", "annot", "u4", "10.0.0.4", nil, "")
	a.Annotations = map[string]string{AnnotationServiceName: "billing"}
	x := BuildIndex(Objects{Pods: []*corev1.Pod{p, q, r, a}, ReplicaSets: []*appsv1.ReplicaSet{rs}}, nil)
	for pod, want := range map[*corev1.Pod]string{p: "lonely", q: "worker", r: "bare", a: "billing"} {
		if got := x.PodNodeID(pod); got != want {
			t.Errorf("PodNodeID(%s) = %q, want %q", pod.Name, got, want)
		}
	}
}

func TestProtocol(t *testing.T) {
	for _, tc := range []struct {
		sp   *corev1.ServicePort
		want string
	}{
		{nil, "TCP"},
		{&corev1.ServicePort{Name: "web"}, "TCP"},
		{&corev1.ServicePort{Name: "http-metrics"}, "HTTP"},
		{&corev1.ServicePort{Name: "x", AppProtocol: ptr("kubernetes.io/h2c")}, "HTTP"},
		{&corev1.ServicePort{Name: "x", AppProtocol: ptr("grpc")}, "gRPC"},
		{&corev1.ServicePort{Name: "postgres"}, "postgresql"},
	} {
		if got := Protocol(tc.sp); got != tc.want {
			t.Errorf("Protocol(%+v) = %s, want %s", tc.sp, got, tc.want)
		}
	}
}

func conn(l, r string, lp, rp uint16, state, dir string) api.Conn {
	return api.Conn{Local: api.Endpoint{IP: l, Port: lp}, Remote: api.Endpoint{IP: r, Port: rp}, State: state, Direction: dir}
}

// One connection seen from both ends (client: ClusterIP:80, server:
// podIP:8080) is one edge and counted once; TIME_WAIT rows only count
// through closed births; probes from the node and loopback are ignored; an
// external client is completed from the inbound side.
func TestAddSnapshotsDedupe(t *testing.T) {
	o, cidrs := world()
	x := BuildIndex(o, cidrs)
	snap := &api.Snapshot{SchemaVersion: api.SchemaVersion, TakenAt: t0, Namespaces: []api.Namespace{
		{PodUID: "uid-fe", IPs: []string{"10.244.1.5"}, Connections: []api.Conn{
			conn("10.244.1.5", "10.96.0.20", 40000, 80, "ESTABLISHED", api.Outbound),
			conn("10.244.1.5", "10.96.0.20", 40001, 80, "TIME_WAIT", api.Outbound), // old, closed: no evidence
			conn("127.0.0.1", "127.0.0.1", 40002, 9000, "ESTABLISHED", api.Outbound),
		}},
		{IPs: []string{"10.244.2.7"}, Connections: []api.Conn{ // found by IP, no UID
			conn("10.244.2.7", "10.244.1.5", 8080, 40000, "ESTABLISHED", api.Inbound),  // same connection, server side
			conn("10.244.2.7", "192.0.2.10", 8080, 51000, "ESTABLISHED", api.Inbound),  // kubelet probe
			conn("10.244.2.7", "203.0.113.9", 8080, 61000, "ESTABLISHED", api.Inbound), // external client
		}},
		{HostNetwork: true, IPs: []string{"192.0.2.10"}, Connections: []api.Conn{
			conn("192.0.2.10", "10.244.2.7", 51000, 8080, "ESTABLISHED", api.Outbound),
		}},
	}, Births: &api.Births{Polls: []api.PollBirths{{Seq: 1, TakenAt: t0, Namespaces: []api.NamespaceBirths{
		{PodUID: "uid-fe", IPs: []string{"10.244.1.5"}, Closed: []api.Flow{{Direction: api.Outbound, Local: api.Endpoint{IP: "10.244.1.5"}, Remote: api.Endpoint{IP: "10.96.0.20", Port: 80}, ClosedSinceLastPoll: 2}}},
	}}}}}
	st := store.New(store.Options{Retention: time.Hour, Now: func() time.Time { return t0 }})
	b := store.NewBatch(model.SourceNetwork)
	cs := AddSnapshots(b, x, []*api.Snapshot{snap})
	st.Apply(b)
	edges, nodes := st.Snapshot(t0.Add(-time.Minute), t0.Add(time.Minute), model.SourceNetwork)
	got := map[model.EdgeKey]uint64{}
	for _, e := range edges {
		got[e.Key] = e.Stats.Connections
	}
	want := map[model.EdgeKey]uint64{
		{Source: "web-frontend", Target: "checkout"}:      3, // 1 live + 2 closed births
		{Source: "payments-provider", Target: "checkout"}: 1,
	}
	if len(got) != len(want) {
		t.Fatalf("edges = %v, want %v", got, want)
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("edge %v = %d connections, want %d (all: %v)", k, got[k], n, got)
		}
	}
	if cs.Duplicates != 1 || cs.TimeWait != 1 || cs.UnknownLocal != 1 || cs.ClosedBirths != 2 {
		t.Errorf("stats = %+v", cs)
	}
	for _, e := range edges {
		if e.Key.Target == "checkout" && e.Info.Protocol != "gRPC" {
			t.Errorf("edge %v protocol %q, want gRPC", e.Key, e.Info.Protocol)
		}
	}
	if nodes["payments-provider"].Kind != model.KindExternal {
		t.Errorf("external node = %+v", nodes["payments-provider"])
	}
}

// A dead edge: only old TIME_WAIT rows remain, nothing new closed. No
// connections are recorded.
func TestTimeWaitDoesNotKeepEdgeAlive(t *testing.T) {
	o, cidrs := world()
	x := BuildIndex(o, cidrs)
	snap := &api.Snapshot{SchemaVersion: api.SchemaVersion, TakenAt: t0, Namespaces: []api.Namespace{{PodUID: "uid-fe", Connections: []api.Conn{
		conn("10.244.1.5", "10.96.0.20", 40001, 80, "TIME_WAIT", api.Outbound),
	}}}}
	b := store.NewBatch(model.SourceNetwork)
	AddSnapshots(b, x, []*api.Snapshot{snap})
	if b.Len() != 0 {
		t.Fatalf("TIME_WAIT alone recorded %d cells", b.Len())
	}
}

func TestDeclaredEdges(t *testing.T) {
	checkout := svc("shop", "checkout", "", map[string]string{"app": "checkout"})
	frontend := svc("shop", "frontend", "", map[string]string{"app": "frontend"})
	db := svc("data", "orders-db", "", map[string]string{"app": "orders-db"})
	noSel := svc("shop", "external-name", "", nil)
	nss := []*corev1.Namespace{
		{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{"kubernetes.io/metadata.name": "shop"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "data", Labels: map[string]string{"kubernetes.io/metadata.name": "data"}}},
	}
	pols := []*networkingv1.NetworkPolicy{
		{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "checkout-in"}, Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "checkout"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{
				{From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "frontend"}}}}},
				{From: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8"}}}},
				{}, // allow-all: no edge
			},
			Egress: []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "data"}},
				PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"app": "orders-db"}},
			}}}},
		}},
	}
	got := DeclaredEdges(pols, []*corev1.Service{checkout, frontend, db, noSel}, nss, nil)
	// The unnamed ipBlock is a node named by its CIDR text.
	want := []PolicyEdge{
		{model.EdgeKey{Source: "10.0.0.0/8", Target: "checkout"}, []string{"shop/checkout-in"}},
		{model.EdgeKey{Source: "checkout", Target: "orders-db"}, []string{"shop/checkout-in"}},
		{model.EdgeKey{Source: "frontend", Target: "checkout"}, []string{"shop/checkout-in"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("DeclaredEdges = %v, want %v", got, want)
	}
}

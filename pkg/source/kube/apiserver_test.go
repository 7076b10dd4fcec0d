package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend/log"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/livemap/servicemap/internal/testenv/kubeapi"
	"github.com/livemap/servicemap/pkg/agent"
	"github.com/livemap/servicemap/pkg/agent/api"
	"github.com/livemap/servicemap/pkg/config"
	"github.com/livemap/servicemap/pkg/model"
	"github.com/livemap/servicemap/pkg/store"
)

// pluginRBAC is the least-privilege manifest the tests bind.
const pluginRBAC = "../../../deploy/plugin-rbac.yaml"

func pluginClusterRole(t *testing.T) *rbacv1.ClusterRole {
	return kubeapi.ClusterRoleFromManifest(t, pluginRBAC)
}

func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: %v", what, err)
}

type fixedSnapshot struct{ snap *api.Snapshot }

func (f *fixedSnapshot) Last() *api.Snapshot { return f.snap }

func (f *fixedSnapshot) Births(after, through, sampled uint64) ([]api.PollBirths, uint64) {
	return nil, 0
}

// cluster writes objects with the admin client (kubeapi.Objects).
type cluster = kubeapi.Objects

func resolvesTo(src *Source, ip string, port uint16, want string) func() error {
	return func() error {
		got, ok := src.Index().Resolve(netip.MustParseAddr(ip), port)
		if !ok || got.ID != want {
			return fmt.Errorf("%s:%d resolves to %q (ok=%v), want %q", ip, port, got.ID, ok, want)
		}
		return nil
	}
}

// TestSourceAgainstRealAPIServer runs the source with the restricted user's
// token bound to the exact ClusterRole of deploy/plugin-rbac.yaml against a
// real kube-apiserver: it syncs, resolves, turns a real agent HTTP server's
// snapshot into edges, names a dead agent in the stale notice, follows pod
// churn and IP reuse, and keeps watching across an API server restart.
func TestSourceAgainstRealAPIServer(t *testing.T) {
	kc := kubeapi.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	admin := kubernetes.NewForConfigOrDie(kc.AdminConfig())
	c := &cluster{T: t, Ctx: ctx, Client: admin}

	// Without the binding, the restricted user can do nothing: Check and
	// the informers' sync say what is refused.
	preJSON, _ := json.Marshal(map[string]any{"kubernetes": map[string]any{
		"enabled": true, "mode": "url", "apiServerUrl": kc.URL(), "namespaces": []string{"shop"}}})
	preSettings, err := config.Parse(preJSON, map[string]string{"kubeToken": kc.RestrictedToken(), "kubeCACert": string(kc.CACertPEM())})
	c.Must(err)
	pre, err := New(preSettings, store.New(store.Options{Retention: time.Hour}), log.DefaultLogger)
	c.Must(err)
	if err := pre.Check(ctx); err == nil || !apierrors.IsForbidden(errors.Unwrap(err)) || !strings.Contains(err.Error(), "services") {
		t.Errorf("Check without RBAC = %v, want forbidden listing services", err)
	}
	preCtx, preCancel := context.WithTimeout(ctx, 2*time.Second)
	if err := pre.WaitForSync(preCtx); err == nil || !strings.Contains(err.Error(), "services in namespace shop") || !strings.Contains(err.Error(), "nodes") {
		t.Errorf("WaitForSync without RBAC = %v, want the unsynced informers named", err)
	}
	preCancel()
	pre.Close()

	// Least privilege: the ClusterRole from the manifest, bound to the
	// restricted user.
	cr := pluginClusterRole(t)
	_, err = admin.RbacV1().ClusterRoles().Create(ctx, cr, metav1.CreateOptions{})
	c.Must(err)
	_, err = admin.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "servicemap-plugin-test"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: cr.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: "rbac.authorization.k8s.io", Name: kubeapi.RestrictedUser}},
	}, metav1.CreateOptions{})
	c.Must(err)

	const ns = "shop"
	_, err = admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	c.Must(err)
	node, err := admin.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}}, metav1.CreateOptions{})
	c.Must(err)
	node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.0.2.10"}}
	_, err = admin.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
	c.Must(err)

	// checkout: Deployment → ReplicaSet → pod, Service with a named port.
	lbl := map[string]string{"app": "checkout"}
	tmpl := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: lbl},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.invalid/app:1"}}}}
	dep, err := admin.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "checkout"},
		Spec:       appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: lbl}, Template: tmpl},
	}, metav1.CreateOptions{})
	c.Must(err)
	rs, err := admin.AppsV1().ReplicaSets(ns).Create(ctx, &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "checkout-5d8f", OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: dep.Name, UID: dep.UID, Controller: ptr(true)}}},
		Spec:       appsv1.ReplicaSetSpec{Selector: &metav1.LabelSelector{MatchLabels: lbl}, Template: tmpl},
	}, metav1.CreateOptions{})
	c.Must(err)
	rsRef := &metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID, Controller: ptr(true)}
	checkoutSvc := c.Service(ns, "checkout", lbl, corev1.ServicePort{Name: "grpc-api", Port: 80, TargetPort: intstr.FromString("api")},
		map[string]string{AnnotationCircuitBreaker: "consecutive5xx=5", AnnotationTeam: "payments"})
	co1 := c.Pod(ns, "checkout-5d8f-a", "10.244.2.7", lbl, rsRef)
	c.Slice(ns, "checkout", 8080, "grpc-api", co1)
	// The annotation names the node as traces name the service.
	feLbl := map[string]string{"app": "frontend"}
	c.Service(ns, "frontend", feLbl, corev1.ServicePort{Name: "http", Port: 80, TargetPort: intstr.FromInt32(3000)},
		map[string]string{AnnotationServiceName: "web-frontend"})
	fe := c.Pod(ns, "frontend-1", "10.244.1.5", feLbl, nil)
	c.Slice(ns, "frontend", 3000, "http", fe)

	// A real agent HTTP server on loopback, serving a snapshot built from
	// the API types; a second agent address where nothing listens.
	snap := &api.Snapshot{SchemaVersion: api.SchemaVersion, Epoch: "run-1", Node: "node-a", Seq: 7, TakenAt: time.Now().UTC().Truncate(time.Second), Namespaces: []api.Namespace{
		{PodUID: string(fe.UID), IPs: []string{"10.244.1.5"}, Connections: []api.Conn{
			conn("10.244.1.5", checkoutSvc.Spec.ClusterIP, 40000, 80, "ESTABLISHED", api.Outbound),
		}},
		{PodUID: string(co1.UID), IPs: []string{"10.244.2.7"}, Connections: []api.Conn{
			conn("10.244.2.7", "10.244.1.5", 8080, 40000, "ESTABLISHED", api.Inbound),
			conn("10.244.2.7", "192.0.2.10", 8080, 51000, "ESTABLISHED", api.Inbound),
			conn("10.244.2.7", "198.51.100.4", 8080, 61000, "ESTABLISHED", api.Inbound),
		}},
	}}
	srv, err := agent.NewServer(&fixedSnapshot{snap}, "agent-secret", 0)
	c.Must(err)
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	c.Must(err)
	deadAddr := dead.Addr().String()
	dead.Close()

	// The live agent is found through the API: a pod with the agent label
	// in the agent namespace, reached at podIP:agentPort. The dead one is a
	// static address.
	_, hsPort, _ := net.SplitHostPort(strings.TrimPrefix(hs.URL, "http://"))
	const agentNS = "servicemap"
	_, err = admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: agentNS}}, metav1.CreateOptions{})
	c.Must(err)
	c.Pod(agentNS, "servicemap-agent-x1", "127.0.0.1", map[string]string{LabelAppName: "servicemap-agent"}, nil)
	c.Pod(agentNS, "unrelated", "127.0.0.2", map[string]string{LabelAppName: "other"}, nil)
	jsonData, _ := json.Marshal(map[string]any{
		"refreshIntervalSeconds": 1,
		"kubernetes": map[string]any{
			"enabled": true, "mode": "url", "apiServerUrl": kc.URL(), "namespaces": []string{ns},
			"agentNamespace": agentNS, "agentPort": mustAtoi(hsPort),
			"staticAgents":  []string{deadAddr},
			"externalCidrs": []map[string]string{{"name": "partner-api", "cidr": "198.51.100.0/24"}},
		},
	})
	settings, err := config.Parse(jsonData, map[string]string{
		"kubeToken": kc.RestrictedToken(), "kubeCACert": string(kc.CACertPEM()), "agentToken": "agent-secret",
	})
	c.Must(err)
	st := store.New(store.Options{Retention: time.Hour})
	src, err := New(settings, st, log.DefaultLogger)
	c.Must(err)
	defer src.Close()

	begin := time.Now()
	syncCtx, syncCancel := context.WithTimeout(ctx, 60*time.Second)
	c.Must(src.WaitForSync(syncCtx))
	syncCancel()
	t.Logf("informers synced with the restricted token in %v", time.Since(begin).Round(time.Millisecond))
	// Check lists every resource with the restricted token, then fetches
	// from the agents: the live one (found as a pod) answers, the dead
	// static one is named.
	if err := src.Check(ctx); err == nil || !strings.Contains(err.Error(), "agent "+deadAddr+":") || strings.Contains(err.Error(), "127.0.0.1:"+hsPort+":") {
		t.Errorf("Check = %v, want only the dead agent %s named", err, deadAddr)
	}

	// The same token may not read secrets.
	restricted := kubernetes.NewForConfigOrDie(kc.ConfigForToken(kc.RestrictedToken()))
	if _, err := restricted.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("restricted token listing secrets: want Forbidden, got %v", err)
	}
	if _, err := restricted.CoreV1().Secrets(metav1.NamespaceAll).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("restricted token listing secrets cluster-wide: want Forbidden, got %v", err)
	}

	// (a) resolution through the informers.
	eventually(t, "checkout ClusterIP", resolvesTo(src, checkoutSvc.Spec.ClusterIP, 80, "checkout"))
	eventually(t, "checkout pod", resolvesTo(src, "10.244.2.7", 8080, "checkout"))
	eventually(t, "frontend pod", resolvesTo(src, "10.244.1.5", 3000, "web-frontend"))
	eventually(t, "node", resolvesTo(src, "192.0.2.10", 10250, HostNodePrefix+"node-a"))
	eventually(t, "external", resolvesTo(src, "198.51.100.4", 443, "partner-api"))
	tgt, _ := src.Index().Resolve(netip.MustParseAddr(checkoutSvc.Spec.ClusterIP), 80)
	if tgt.ServerPort != 8080 || Protocol(tgt.Port) != "gRPC" {
		t.Errorf("ClusterIP:80 → server port %d protocol %s, want 8080 gRPC", tgt.ServerPort, Protocol(tgt.Port))
	}
	if k, n := src.Index().Workload(co1); k != "Deployment" || n != "checkout" {
		t.Errorf("workload of %s = %s/%s", co1.Name, k, n)
	}

	wantAgents := []string{"127.0.0.1:" + hsPort, deadAddr}
	slices.Sort(wantAgents)
	eventually(t, "agent discovery", func() error {
		if got := src.Agents(); !slices.Equal(got, wantAgents) {
			return fmt.Errorf("agents = %v, want %v", got, wantAgents)
		}
		return nil
	})

	// Agents: one live, one dead. The live one's data flows; the status
	// is stale and names the dead one.
	err = src.Refresh(ctx)
	if err == nil || !strings.Contains(err.Error(), deadAddr) {
		t.Fatalf("refresh error = %v, want it to name %s", err, deadAddr)
	}
	sts := st.Statuses()
	if len(sts) != 1 || !sts[0].Stale() || !strings.Contains(sts[0].Notice(), deadAddr) {
		t.Fatalf("statuses = %+v", sts)
	}
	t.Logf("stale notice: %s", sts[0].Notice())
	edges, nodes := st.Snapshot(snap.TakenAt.Add(-time.Minute), snap.TakenAt.Add(time.Minute), model.SourceNetwork)
	got := map[string]uint64{}
	for _, e := range edges {
		got[e.Key.ID()] = e.Stats.Connections
		if e.Key.Target == "checkout" && (e.Info.Protocol != "gRPC" || e.Info.CircuitBreaker != "consecutive5xx=5") {
			t.Errorf("edge %s info = %+v", e.Key.ID(), e.Info)
		}
	}
	if len(got) != 2 || got["web-frontend->checkout"] != 1 || got["partner-api->checkout"] != 1 {
		t.Fatalf("edges = %v, want web-frontend->checkout=1 (one connection seen from both ends) and partner-api->checkout=1", got)
	}
	if n := nodes["checkout"]; n.Namespace != ns || n.Team != "payments" || n.LastDeploy.IsZero() {
		t.Errorf("checkout node = %+v", n)
	}
	// The same snapshot (same seq) fetched again is not counted again.
	_ = src.Refresh(ctx)
	edges, _ = st.Snapshot(snap.TakenAt.Add(-time.Minute), snap.TakenAt.Add(time.Minute), model.SourceNetwork)
	for _, e := range edges {
		if e.Stats.Connections != 1 {
			t.Errorf("after a second refresh of the same snapshot, %s has %d connections", e.Key.ID(), e.Stats.Connections)
		}
	}

	// A response over the size limit is refused and named.
	src.maxBytes = 200
	if err := src.Refresh(ctx); err == nil || !strings.Contains(err.Error(), "larger than 200 bytes") {
		t.Errorf("oversized snapshot: refresh error = %v", err)
	}
	src.maxBytes = MaxSnapshotBytes

	// Run, as the plugin runs it: a second source with only the discovered
	// agent reports success on its own schedule and stops with its context.
	runJSON, _ := json.Marshal(map[string]any{
		"refreshIntervalSeconds": 1,
		"kubernetes": map[string]any{
			"enabled": true, "mode": "url", "apiServerUrl": kc.URL(), "namespaces": []string{ns},
			"agentNamespace": agentNS, "agentPort": mustAtoi(hsPort),
		},
	})
	runSettings, err := config.Parse(runJSON, map[string]string{
		"kubeToken": kc.RestrictedToken(), "kubeCACert": string(kc.CACertPEM()), "agentToken": "agent-secret",
	})
	c.Must(err)
	runStore := store.New(store.Options{Retention: time.Hour})
	runSrc, err := New(runSettings, runStore, log.DefaultLogger)
	c.Must(err)
	runCtx, runCancel := context.WithCancel(ctx)
	runDone := make(chan struct{})
	go func() { runSrc.Run(runCtx); close(runDone) }()
	eventually(t, "Run reports success", func() error {
		sts := runStore.Statuses()
		if len(sts) != 1 || sts[0].Stale() || sts[0].LastSuccess.IsZero() {
			return fmt.Errorf("statuses = %+v", sts)
		}
		edges, _ := runStore.Snapshot(snap.TakenAt.Add(-time.Minute), snap.TakenAt.Add(time.Minute), model.SourceNetwork)
		if len(edges) != 2 {
			return fmt.Errorf("%d edges", len(edges))
		}
		return nil
	})
	t.Logf("Run status: %s", runStore.Statuses()[0].Detail)
	runCancel()
	select {
	case <-runDone:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	runSrc.Close()

	// NetworkPolicies through the informers: declared edges.
	_, err = admin.NetworkingV1().NetworkPolicies(ns).Create(ctx, &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "checkout-ingress"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: lbl},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{
				{PodSelector: &metav1.LabelSelector{MatchLabels: feLbl}},
			}}},
		},
	}, metav1.CreateOptions{})
	c.Must(err)
	eventually(t, "declared edges", func() error {
		want := []model.EdgeKey{{Source: "web-frontend", Target: "checkout"}}
		if got := Keys(src.DeclaredEdges()); !slices.Equal(got, want) {
			return fmt.Errorf("declared = %v, want %v", got, want)
		}
		return nil
	})

	// (c) churn: checkout's pod is replaced by one with a new IP, and the
	// old IP is reused by a pod of another service while the old pod is
	// still terminating (no kubelet finishes its graceful deletion).
	c.Must(admin.CoreV1().Pods(ns).Delete(ctx, co1.Name, metav1.DeleteOptions{}))
	co2 := c.Pod(ns, "checkout-5d8f-b", "10.244.2.8", lbl, rsRef)
	c.Slice(ns, "checkout", 8080, "grpc-api", co2)
	invLbl := map[string]string{"app": "inventory"}
	c.Service(ns, "inventory", invLbl, corev1.ServicePort{Name: "http", Port: 80, TargetPort: intstr.FromInt32(9000)}, nil)
	inv := c.Pod(ns, "inventory-1", "10.244.2.7", invLbl, nil)
	c.Slice(ns, "inventory", 9000, "http", inv)
	eventually(t, "new checkout pod", resolvesTo(src, "10.244.2.8", 8080, "checkout"))
	eventually(t, "reused IP", resolvesTo(src, "10.244.2.7", 9000, "inventory"))

	// (d) the API server restarts: watches break, informers re-list and see
	// objects created afterwards.
	kc.Restart(t)
	late := c.Service(ns, "late", map[string]string{"app": "late"}, corev1.ServicePort{Name: "http", Port: 80}, nil)
	begin = time.Now()
	eventually(t, "service created after restart", resolvesTo(src, late.Spec.ClusterIP, 80, "late"))
	t.Logf("service created after the restart seen in %v", time.Since(begin).Round(time.Millisecond))
	// No kubelet confirms a graceful deletion: delete at once.
	c.Must(admin.CoreV1().Pods(ns).Delete(ctx, co2.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr(int64(0))}))
	eventually(t, "pod deleted after restart", func() error {
		if p := src.Index().PodByIP(netip.MustParseAddr("10.244.2.8")); p != nil {
			return fmt.Errorf("10.244.2.8 still held by %s", p.Name)
		}
		return nil
	})
}

func mustAtoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		panic(err)
	}
	return n
}

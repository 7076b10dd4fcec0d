package plugin

import (
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/livemap/servicemap/internal/testenv/kubeapi"
	"github.com/livemap/servicemap/internal/testenv/netns"
	"github.com/livemap/servicemap/pkg/agent"
)

// TestNetworkEdgeThroughPluginProtocol is the network map end to end, as
// Grafana sees it: a real kube-apiserver (the plugin reads it with exactly
// the ClusterRole of deploy/plugin-rbac.yaml), two real network namespaces
// as pods with a real TCP connection through a ClusterIP (iptables DNAT as
// kube-proxy does), the real node agent reading them and serving its
// snapshot over HTTP, and the plugin served over gRPC polling that agent.
//
// The shared datasourcetest server (one per test binary) is no obstacle: the
// data source instance built for these settings starts the Kubernetes
// source like any other instance. Its clock is the package's fixed testNow
// (for status times only); the agent stamps real times, so the queries ask
// for a range around the real now.
func TestNetworkEdgeThroughPluginProtocol(t *testing.T) {
	netns.RequireRoot(t)
	kc := kubeapi.Start(t)
	kc.GrantRestricted(t, "../../deploy/plugin-rbac.yaml")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := kc.Objects(t, ctx)

	cli, srv := netns.PodPair(t, "10.247")
	const ns = "shop"
	c.Namespace(ns)
	feLbl, coLbl := map[string]string{"app": "frontend"}, map[string]string{"app": "checkout"}
	checkout := c.Service(ns, "checkout", coLbl, corev1.ServicePort{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}, nil)
	c.Service(ns, "frontend", feLbl, corev1.ServicePort{Name: "http", Port: 80, TargetPort: intstr.FromInt32(3000)}, nil)
	c.Slice(ns, "checkout", 8080, "http", c.Pod(ns, "checkout-1", srv.IP, coLbl, nil))
	c.Slice(ns, "frontend", 3000, "http", c.Pod(ns, "frontend-1", cli.IP, feLbl, nil))
	// NetworkPolicies: frontend may call checkout; checkout may call the
	// payment provider's range, which externalCidrs names payments-psp.
	_, err := c.Client.NetworkingV1().NetworkPolicies(ns).Create(ctx, &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "checkout-in"},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: coLbl},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: feLbl}}}}}},
	}, metav1.CreateOptions{})
	c.Must(err)
	_, err = c.Client.NetworkingV1().NetworkPolicies(ns).Create(ctx, &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "checkout-out"},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: coLbl},
			Egress: []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "203.0.113.0/24"}}}}}},
	}, metav1.CreateOptions{})
	c.Must(err)

	// A real connection frontend → checkout's ClusterIP, DNATed to the pod.
	cli.DNAT(t, checkout.Spec.ClusterIP, 80, srv.IP+":8080")
	ln := srv.Listen(t, ":8080")
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(io.Discard, conn); conn.Close() }()
		}
	}()
	conn := cli.Dial(t, checkout.Spec.ClusterIP+":80")
	defer conn.Close()

	// The real agent, polling every second, served over HTTP.
	ag := agent.New(agent.Config{Node: "node-a", PollInterval: time.Second})
	agCtx, agCancel := context.WithCancel(ctx)
	defer agCancel()
	go ag.Run(agCtx)
	as, err := agent.NewServer(ag, "agent-secret", 0)
	c.Must(err)
	hs := httptest.NewServer(as.Handler())
	defer hs.Close()

	h := serve(t, map[string]any{
		"refreshIntervalSeconds": 1,
		"declaredArchitecture":   "frontend: [checkout]\ncheckout: [payments]\n",
		"kubernetes": map[string]any{
			"enabled": true, "mode": "url", "apiServerUrl": kc.URL(), "namespaces": []string{ns},
			"staticAgents":  []string{strings.TrimPrefix(hs.URL, "http://")},
			"externalCidrs": []map[string]string{{"name": "payments-psp", "cidr": "203.0.113.0/24"}},
		},
	}, map[string]string{"kubeToken": kc.RestrictedToken(), "kubeCACert": string(kc.CACertPEM()), "agentToken": "agent-secret"})
	defer replaceInstance(t, h)

	var dr backend.DataResponse
	deadline := time.Now().Add(60 * time.Second)
	for {
		now := time.Now()
		dr = h.query(t, q("A", "serviceMap", now.Add(-5*time.Minute), now.Add(time.Minute), `{}`)).Responses["A"]
		if dr.Error != nil {
			t.Fatal(dr.Error)
		}
		if len(dr.Frames) == 2 && dr.Frames[1].Rows() > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no network edge after 60 s; health: %+v", h.health(t))
		}
		time.Sleep(200 * time.Millisecond)
	}
	wantRows(t, dr.Frames[1], []string{"frontend->checkout|frontend|checkout|network"}, "id", "source", "target", "detail__sources")
	nodes := rows(t, dr.Frames[0], "id")
	if strings.Join(nodes, ",") != "checkout,frontend" {
		t.Errorf("nodes %v, want checkout and frontend", nodes)
	}
	if r := h.health(t); r.Status != backend.HealthStatusOk {
		t.Errorf("health %v: %s", r.Status, r.Message)
	}

	// Drift: declared = the setting ∪ the NetworkPolicies, each row naming
	// its declarations.
	now := time.Now()
	dr = h.query(t, q("D", "drift", now.Add(-5*time.Minute), now.Add(time.Minute), `{}`)).Responses["D"]
	if dr.Error != nil {
		t.Fatal(dr.Error)
	}
	wantRows(t, frameByName(t, dr, "drift_edges"), []string{
		"checkout|payments|unused|declaredArchitecture",
		"checkout|payments-psp|unused|networkpolicy shop/checkout-out",
		"frontend|checkout|matched|declaredArchitecture, networkpolicy shop/checkout-in",
	}, "source", "target", "status", "declared_by")
	wantRows(t, frameByName(t, dr, "drift_summary"), []string{"1|3|1"}, "observed", "declared", "matched")
}

// replaceInstance stops the instance's sources: the instance manager
// replaces an instance whose settings changed and disposes the old one
// (after its 5 s grace period).
func replaceInstance(t *testing.T, h *harness) {
	h.settings.Updated = h.settings.Updated.Add(time.Second)
	h.settings.JSONData = []byte(`{}`)
	h.health(t)
}

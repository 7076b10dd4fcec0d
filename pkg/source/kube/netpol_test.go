package kube

import (
	"net/netip"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/livemap/servicemap/pkg/config"
	"github.com/livemap/servicemap/pkg/model"
)

var testCIDRs = []config.ExternalCIDR{
	{Name: "payments-psp", CIDR: "203.0.113.0/24"},
	{Name: "psp-fraud", CIDR: "203.0.113.128/25"},
	{Name: "partners", CIDR: "198.51.100.0/24"},
	{Name: "internet-v6", CIDR: "2001:db8::/32"},
}

func TestBlockNames(t *testing.T) {
	r := newCIDRRules(testCIDRs)
	cases := []struct {
		cidr   string
		except []string
		want   []string
	}{
		// the block is a rule: the rule and the more specific rule inside it
		{"203.0.113.0/24", nil, []string{"payments-psp", "psp-fraud"}},
		// except swallows the inner rule whole
		{"203.0.113.0/24", []string{"203.0.113.128/25"}, []string{"payments-psp"}},
		// except takes part of the inner rule: some of it is still allowed
		{"203.0.113.0/24", []string{"203.0.113.192/26"}, []string{"payments-psp", "psp-fraud"}},
		// a block inside a rule resolves as its addresses do
		{"203.0.113.7/32", nil, []string{"payments-psp"}},
		{"203.0.113.200/29", nil, []string{"psp-fraud"}},
		// everything except the documentation ranges covers the other rules
		{"0.0.0.0/0", []string{"203.0.113.0/24"}, []string{"partners"}},
		{"0.0.0.0/0", []string{"0.0.0.0/1", "128.0.0.0/1"}, nil},
		// nothing named: a single address as Resolve names it, else the CIDR
		{"192.0.2.44/32", nil, []string{"192.0.2.44"}},
		{"192.0.2.0/28", nil, []string{"192.0.2.0/28"}},
		{"2001:db8:1::/48", nil, []string{"internet-v6"}},
		// masked as the resolver masks rules
		{"203.0.113.9/24", nil, []string{"payments-psp", "psp-fraud"}},
	}
	for _, c := range cases {
		got, ok := r.blockNames(c.cidr, c.except)
		if !ok || !reflect.DeepEqual(got, c.want) {
			t.Errorf("blockNames(%s except %v) = %v (ok=%v), want %v", c.cidr, c.except, got, ok, c.want)
		}
	}
	if _, ok := r.blockNames("not-a-cidr", nil); ok {
		t.Error("a malformed cidr must not parse")
	}
	// A /32 the resolver names by address must be the same name.
	x := BuildIndex(Objects{}, testCIDRs)
	for _, ip := range []string{"203.0.113.7", "192.0.2.44"} {
		tgt, _ := x.Resolve(netip.MustParseAddr(ip), 443)
		names, _ := r.blockNames(ip+"/32", nil)
		if len(names) != 1 || names[0] != tgt.ID {
			t.Errorf("%s: resolver says %q, ipBlock says %v", ip, tgt.ID, names)
		}
	}
}

// A declared egress to 203.0.113.0/24 named "payments-psp" is the same edge
// as the observed connection to an address in it.
func TestDeclaredEgressIPBlockMeetsObservedEdge(t *testing.T) {
	o, _ := world()
	x := BuildIndex(o, testCIDRs)
	pol := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "checkout-out"}, Spec: networkingv1.NetworkPolicySpec{
		PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "checkout"}},
		Egress: []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{
			{IPBlock: &networkingv1.IPBlock{CIDR: "203.0.113.0/24", Except: []string{"203.0.113.128/25"}}},
		}}},
		Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{
			{IPBlock: &networkingv1.IPBlock{CIDR: "198.51.100.0/24"}},
		}}},
	}}
	got := DeclaredEdges([]*networkingv1.NetworkPolicy{pol}, o.Services, nil, testCIDRs)
	want := []PolicyEdge{
		{model.EdgeKey{Source: "checkout", Target: "payments-psp"}, []string{"shop/checkout-out"}},
		{model.EdgeKey{Source: "partners", Target: "checkout"}, []string{"shop/checkout-out"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("DeclaredEdges = %v, want %v", got, want)
	}
	co := x.PodByIP(netip.MustParseAddr("10.244.2.7"))
	remote, _ := x.Resolve(netip.MustParseAddr("203.0.113.7"), 443)
	observed := model.EdgeKey{Source: x.PodNodeID(co), Target: remote.ID}
	if observed != got[0].EdgeKey {
		t.Errorf("observed edge %v, declared %v", observed, got[0].EdgeKey)
	}
}

// Same-named Services in two namespaces are two nodes, named
// "<name>.<namespace>"; a unique name stays bare; the annotation is never
// qualified; the pods behind each Service and NetworkPolicies use the same ids.
func TestSameNameInTwoNamespaces(t *testing.T) {
	lbl := map[string]string{"app": "checkout"}
	port := corev1.ServicePort{Name: "http", Port: 80}
	prod := svc("prod", "checkout", "10.96.1.1", lbl, port)
	stg := svc("staging", "checkout", "10.96.1.2", lbl, port)
	fe := svc("prod", "frontend", "10.96.1.3", map[string]string{"app": "frontend"}, port)
	// one namespace, two Services with one app name: still one node
	headless := svc("prod", "checkout-headless", "", lbl, port)
	headless.Labels = map[string]string{LabelAppName: "cart"}
	cart := svc("prod", "cart", "10.96.1.5", map[string]string{"app": "cart"}, port)
	// annotated alike in two namespaces: merged on purpose
	pa := svc("prod", "payments", "10.96.1.6", map[string]string{"app": "payments"}, port)
	pa.Annotations = map[string]string{AnnotationServiceName: "payments"}
	pb := svc("staging", "payments", "10.96.1.7", map[string]string{"app": "payments"}, port)
	pb.Annotations = map[string]string{AnnotationServiceName: "payments"}
	coProd := pod("prod", "checkout-1", "uid-p", "10.244.1.1", lbl, "")
	coStg := pod("staging", "checkout-1", "uid-s", "10.244.1.2", lbl, "")
	x := BuildIndex(Objects{
		Services: []*corev1.Service{prod, stg, fe, headless, cart, pa, pb},
		Pods:     []*corev1.Pod{coProd, coStg},
		EndpointSlices: append([]*discoveryv1.EndpointSlice{},
			slice("prod", "checkout", nil, coProd), slice("staging", "checkout", nil, coStg)),
	}, nil)
	for ip, want := range map[string]string{
		"10.96.1.1": "checkout.prod", "10.96.1.2": "checkout.staging", "10.96.1.3": "frontend",
		"10.244.1.1": "checkout.prod", "10.244.1.2": "checkout.staging",
		"10.96.1.5": "cart", "10.96.1.6": "payments", "10.96.1.7": "payments",
	} {
		if got, _ := x.Resolve(netip.MustParseAddr(ip), 80); got.ID != want {
			t.Errorf("%s resolves to %q, want %q", ip, got.ID, want)
		}
	}
	if n := x.ServiceNode(stg); n.ID != "checkout.staging" || n.Namespace != "staging" {
		t.Errorf("staging node = %+v", n)
	}
	if id := x.ServiceNodeID(headless); id != "cart" {
		t.Errorf("headless id %q, want cart", id)
	}
	pol := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "prod", Name: "checkout-in"}, Spec: networkingv1.NetworkPolicySpec{
		PodSelector: metav1.LabelSelector{MatchLabels: lbl},
		Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{
			{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "frontend"}}}}}},
	}}
	got := Keys(DeclaredEdges([]*networkingv1.NetworkPolicy{pol}, x.Services(), nil, nil))
	// checkout-headless has the same selector, so it is selected too: its id is cart.
	want := []model.EdgeKey{{Source: "frontend", Target: "cart"}, {Source: "frontend", Target: "checkout.prod"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("declared = %v, want %v", got, want)
	}
}

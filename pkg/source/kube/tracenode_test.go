package kube

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TraceServiceNode answers, for a span's (namespace, service.name), exactly
// the id ServiceNodeID gives the Service the network evidence lands on.
func TestTraceServiceNodeMatchesServiceIDs(t *testing.T) {
	svc := func(ns, name string, labels, ann map[string]string) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels, Annotations: ann}}
	}
	x := BuildIndex(Objects{Services: []*corev1.Service{
		svc("prod", "checkout", nil, nil),
		svc("staging", "checkout", nil, nil),
		svc("prod", "catalog", nil, nil), // unique
		svc("prod", "web-svc", map[string]string{LabelAppName: "web"}, nil),
		svc("staging", "web-svc", map[string]string{LabelAppName: "web"}, nil),
		// in prod, "pay" is annotated (never qualified) and also a label of a
		// sibling (qualified): the annotation, the name its traces carry, wins
		svc("prod", "pay-v2", nil, map[string]string{AnnotationServiceName: "pay"}),
		svc("prod", "pay-headless", map[string]string{LabelAppName: "pay"}, nil),
		svc("staging", "pay", nil, nil),
	}}, nil)
	for _, c := range []struct {
		ns, name, want string
		ok             bool
	}{
		{"prod", "checkout", "checkout.prod", true},
		{"staging", "checkout", "checkout.staging", true},
		{"prod", "catalog", "catalog", true},
		{"staging", "catalog", "", false}, // no such Service in staging
		{"prod", "web", "web.prod", true},
		{"staging", "web", "web.staging", true},
		{"prod", "web-svc", "", false}, // the Service name is not its base id
		{"prod", "pay", "pay", true},
		{"staging", "pay", "pay.staging", true},
		{"dev", "checkout", "", false},
		{"", "checkout", "", false},
	} {
		got, ok := x.TraceServiceNode(c.ns, c.name)
		if got != c.want || ok != c.ok {
			t.Errorf("TraceServiceNode(%q, %q) = %q, %v; want %q, %v", c.ns, c.name, got, ok, c.want, c.ok)
		}
	}
	// the same ids as the Services' own
	for _, s := range x.Services() {
		if s.Name == "pay-headless" {
			continue // shares "pay" with the annotated Service above
		}
		if got, _ := x.TraceServiceNode(s.Namespace, baseServiceID(s)); got != x.ServiceNodeID(s) {
			t.Errorf("%s/%s: trace node %q, service node %q", s.Namespace, s.Name, got, x.ServiceNodeID(s))
		}
	}
}

package plugin

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/livemap/servicemap/pkg/config"
	"github.com/livemap/servicemap/pkg/source/gateway"
	"github.com/livemap/servicemap/pkg/source/kube"
)

// With Kubernetes on, gateway upstreams are named through the Kubernetes
// source's own index (kube.BuildIndex over Service, Pod and EndpointSlice
// objects as a cluster shows them), so a Service renamed by label or
// annotation and an upstream given as a ClusterIP or pod IP land on the
// node the network evidence uses.
func TestGatewayUpstreamsNamedLikeKubernetes(t *testing.T) {
	web := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "frontend", Labels: map[string]string{kube.LabelAppName: "web-frontend"}},
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.10", Selector: map[string]string{"app": "frontend"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(3000)}}},
	}
	api := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "api-v2", Annotations: map[string]string{kube.AnnotationServiceName: "api"}},
		Spec:       corev1.ServiceSpec{ClusterIP: "10.96.0.11"},
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "frontend-abc-1", UID: "uid-fe", Labels: map[string]string{"app": "frontend"}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.244.1.5"},
	}
	es := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "frontend-x", Labels: map[string]string{discoveryv1.LabelServiceName: "frontend"}},
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.244.1.5"},
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: "shop", Name: "frontend-abc-1", UID: "uid-fe"}}},
	}
	x := kube.BuildIndex(kube.Objects{Services: []*corev1.Service{web, api}, Pods: []*corev1.Pod{pod}, EndpointSlices: []*discoveryv1.EndpointSlice{es}},
		[]config.ExternalCIDR{{Name: "partner", CIDR: "203.0.113.0/24"}})
	names := gateway.Names{Resolver: newKubeNames(x)}
	for raw, want := range map[string]string{
		"frontend.shop.svc.cluster.local:80":    "web-frontend", // label beats the Service name
		"api-v2.shop.svc:8080":                  "api",          // annotation
		"10.96.0.10:80":                         "web-frontend", // ClusterIP
		"10.244.1.5:3000":                       "web-frontend", // pod IP behind the Service
		"10.244.9.9:3000, 10.244.1.5:3000":      "web-frontend", // nginx retry list: the last answered
		"unknown.shop.svc.cluster.local":        "unknown",      // no such Service: its name
		"203.0.113.9:443":                       "203.0.113.9",  // not a cluster service: the address
		"http://frontend.shop.svc:80/login?x=1": "web-frontend",
		"checkout":                              "checkout",
		"frontend.shop:80":                      "web-frontend", // name.namespace short form
		"api.example":                           "api.example",  // two labels, no such Service: kept
	} {
		if got := names.Node(raw); got != want {
			t.Errorf("Node(%q) = %q, want %q", raw, got, want)
		}
	}
}

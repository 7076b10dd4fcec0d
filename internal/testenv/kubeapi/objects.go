package kubeapi

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Objects writes objects as a cluster would show them, with the admin
// client: there is no controller-manager or kubelet, so pods get their
// status (Running, podIP) and Services their EndpointSlices from here.
type Objects struct {
	T      testing.TB
	Ctx    context.Context
	Client kubernetes.Interface
}

// Objects returns a writer with the admin client.
func (c *Cluster) Objects(t testing.TB, ctx context.Context) *Objects {
	return &Objects{T: t, Ctx: ctx, Client: kubernetes.NewForConfigOrDie(c.AdminConfig())}
}

// Must fails the test on err.
func (o *Objects) Must(err error) {
	o.T.Helper()
	if err != nil {
		o.T.Fatal(err)
	}
}

// Namespace creates a namespace.
func (o *Objects) Namespace(name string) {
	o.T.Helper()
	_, err := o.Client.CoreV1().Namespaces().Create(o.Ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	o.Must(err)
}

// Pod creates a pod on node-a and writes its status: Running with ip.
func (o *Objects) Pod(ns, name, ip string, lbl map[string]string, owner *metav1.OwnerReference) *corev1.Pod {
	o.T.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: lbl},
		Spec:       corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{Name: "app", Image: "example.invalid/app:1"}}},
	}
	if owner != nil {
		p.OwnerReferences = []metav1.OwnerReference{*owner}
	}
	p, err := o.Client.CoreV1().Pods(ns).Create(o.Ctx, p, metav1.CreateOptions{})
	o.Must(err)
	p.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}, HostIP: "192.0.2.10"}
	p, err = o.Client.CoreV1().Pods(ns).UpdateStatus(o.Ctx, p, metav1.UpdateOptions{})
	o.Must(err)
	return p
}

// Service creates a Service (the API server allocates its ClusterIP).
func (o *Objects) Service(ns, name string, sel map[string]string, port corev1.ServicePort, ann map[string]string) *corev1.Service {
	o.T.Helper()
	s, err := o.Client.CoreV1().Services(ns).Create(o.Ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: ann},
		Spec:       corev1.ServiceSpec{Selector: sel, Ports: []corev1.ServicePort{port}},
	}, metav1.CreateOptions{})
	o.Must(err)
	return s
}

// Slice creates or replaces the EndpointSlice of a Service (named like
// it) listing the pods by targetRef on one TCP port.
func (o *Objects) Slice(ns, svcName string, port int32, portName string, pods ...*corev1.Pod) {
	o.T.Helper()
	tcp := corev1.ProtocolTCP
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: svcName, Labels: map[string]string{discoveryv1.LabelServiceName: svcName}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &portName, Port: &port, Protocol: &tcp}},
	}
	for _, p := range pods {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{p.Status.PodIP},
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: p.Name, UID: p.UID}})
	}
	cur, err := o.Client.DiscoveryV1().EndpointSlices(ns).Get(o.Ctx, svcName, metav1.GetOptions{})
	if err == nil {
		es.ResourceVersion = cur.ResourceVersion
		_, err = o.Client.DiscoveryV1().EndpointSlices(ns).Update(o.Ctx, es, metav1.UpdateOptions{})
	} else {
		_, err = o.Client.DiscoveryV1().EndpointSlices(ns).Create(o.Ctx, es, metav1.CreateOptions{})
	}
	o.Must(err)
}

package kubeapi_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/livemap/servicemap/internal/testenv/kubeapi"
)

func TestRealAPIServer(t *testing.T) {
	start := time.Now()
	c := kubeapi.Start(t)
	t.Logf("cluster at %s ready in %v", c.URL(), time.Since(start).Round(time.Millisecond))

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	admin, err := kubernetes.NewForConfig(c.AdminConfig())
	if err != nil {
		t.Fatal(err)
	}
	if len(c.CACertPEM()) == 0 {
		t.Fatal("CACertPEM is empty")
	}
	if cfg := c.AdminConfig(); cfg.Insecure || len(cfg.CAData) == 0 {
		t.Fatalf("AdminConfig must verify TLS with CAData: insecure=%v caData=%d bytes", cfg.Insecure, len(cfg.CAData))
	}

	const ns = "shop"
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{Name: ns},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace: %v", err)
	}

	svc, err := admin.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "checkout", Labels: map[string]string{"app": "checkout"}},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "checkout"},
			Ports: []corev1.ServicePort{{
				Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP,
			}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create service: %v", err)
	}
	clusterIP, err := netip.ParseAddr(svc.Spec.ClusterIP)
	if err != nil {
		t.Fatalf("service got no valid ClusterIP: %q: %v", svc.Spec.ClusterIP, err)
	}
	if !netip.MustParsePrefix(kubeapi.ServiceClusterIPRange).Contains(clusterIP) {
		t.Fatalf("ClusterIP %s is outside %s", clusterIP, kubeapi.ServiceClusterIPRange)
	}

	pod, err := admin.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "checkout-1", Labels: map[string]string{"app": "checkout"}},
		Spec: corev1.PodSpec{
			NodeName: "node-a",
			Containers: []corev1.Container{{
				Name: "app", Image: "example.invalid/checkout:1",
				Ports: []corev1.ContainerPort{{ContainerPort: 8080, Protocol: corev1.ProtocolTCP}},
			}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod: %v", err)
	}
	const podIP = "10.244.1.7"
	pod.Status = corev1.PodStatus{
		Phase:  corev1.PodRunning,
		HostIP: "192.0.2.10",
		PodIP:  podIP,
		PodIPs: []corev1.PodIP{{IP: podIP}},
		Conditions: []corev1.PodCondition{{
			Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now(),
		}},
	}
	if _, err := admin.CoreV1().Pods(ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update pod status: %v", err)
	}

	ready := true
	if _, err := admin.DiscoveryV1().EndpointSlices(ns).Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name:   "checkout-abc12",
			Labels: map[string]string{discoveryv1.LabelServiceName: "checkout"},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{
			Addresses:  []string{podIP},
			Conditions: discoveryv1.EndpointConditions{Ready: &ready},
			NodeName:   &pod.Spec.NodeName,
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: pod.Name, UID: pod.UID},
		}},
		Ports: []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080)), Protocol: ptr(corev1.ProtocolTCP)}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create endpointslice: %v", err)
	}

	// Read everything back.
	gotSvc, err := admin.CoreV1().Services(ns).Get(ctx, "checkout", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if gotSvc.Spec.ClusterIP != svc.Spec.ClusterIP || gotSvc.Spec.Ports[0].TargetPort.IntVal != 8080 {
		t.Errorf("service read back: clusterIP=%s ports=%+v", gotSvc.Spec.ClusterIP, gotSvc.Spec.Ports)
	}
	gotPod, err := admin.CoreV1().Pods(ns).Get(ctx, "checkout-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if gotPod.Status.PodIP != podIP || gotPod.Status.Phase != corev1.PodRunning || gotPod.Labels["app"] != "checkout" {
		t.Errorf("pod read back: ip=%q phase=%q labels=%v", gotPod.Status.PodIP, gotPod.Status.Phase, gotPod.Labels)
	}
	slices, err := admin.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{
		LabelSelector: discoveryv1.LabelServiceName + "=checkout",
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(slices.Items) != 1 || len(slices.Items[0].Endpoints) != 1 ||
		slices.Items[0].Endpoints[0].Addresses[0] != podIP ||
		slices.Items[0].Endpoints[0].TargetRef.Name != "checkout-1" ||
		*slices.Items[0].Ports[0].Port != 8080 {
		t.Errorf("endpointslices read back: %+v", slices.Items)
	}

	// The restricted user is authenticated but has no RBAC grants.
	restricted, err := kubernetes.NewForConfig(c.ConfigForToken(c.RestrictedToken()))
	if err != nil {
		t.Fatal(err)
	}
	_, err = restricted.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("restricted token listing secrets: want 403 Forbidden, got %v", err)
	}
	if se, ok := err.(apierrors.APIStatus); !ok || se.Status().Code != 403 {
		t.Fatalf("restricted token listing secrets: want code 403, got %v", err)
	}
	// A wrong token is not the same as a forbidden one.
	_, err = kubernetes.NewForConfigOrDie(c.ConfigForToken("not-a-token")).CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if !apierrors.IsUnauthorized(err) {
		t.Fatalf("unknown token: want 401, got %v", err)
	}

	// Restart keeps data, port and CA; an existing client works again.
	caBefore := string(c.CACertPEM())
	restartStart := time.Now()
	c.Restart(t)
	t.Logf("restart took %v", time.Since(restartStart).Round(time.Millisecond))
	if string(c.CACertPEM()) != caBefore {
		t.Error("CA changed across Restart")
	}
	pods, err := admin.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("list pods after restart: %v", err)
	}
	if len(pods.Items) != 1 || pods.Items[0].Status.PodIP != podIP {
		t.Fatalf("pods after restart: %+v", pods.Items)
	}
}

func ptr[T any](v T) *T { return &v }

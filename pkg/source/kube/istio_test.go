package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend/log"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/livemap/servicemap/internal/testenv/kubeapi"
	"github.com/livemap/servicemap/pkg/agent"
	"github.com/livemap/servicemap/pkg/agent/api"
	"github.com/livemap/servicemap/pkg/config"
	"github.com/livemap/servicemap/pkg/model"
	"github.com/livemap/servicemap/pkg/store"
)

func TestBreakerAndRetrySummaries(t *testing.T) {
	cases := []struct {
		policy string
		want   string
	}{
		{`{"outlierDetection":{"consecutive5xxErrors":5,"baseEjectionTime":"30s"}}`, "outlier: 5 consecutive 5xx, eject 30s"},
		{`{"outlierDetection":{}}`, "outlier: 5 consecutive 5xx, eject 30s"}, // Istio's defaults
		{`{"outlierDetection":{"consecutiveGatewayErrors":3,"interval":"10s","baseEjectionTime":"1m","maxEjectionPercent":50}}`,
			"outlier: 3 consecutive gateway errors, every 10s, eject 1m, max 50% ejected"},
		{`{"connectionPool":{"tcp":{"maxConnections":100},"http":{"http1MaxPendingRequests":10,"maxRetries":2}}}`, "pool: 100 connections, 10 pending, 2 retries"},
		{`{"loadBalancer":{"simple":"ROUND_ROBIN"}}`, ""},
	}
	for _, c := range cases {
		var m map[string]any
		if err := json.Unmarshal([]byte(c.policy), &m); err != nil {
			t.Fatal(err)
		}
		if got := BreakerSummary(toInt64(m).(map[string]any)); got != c.want {
			t.Errorf("BreakerSummary(%s) = %q, want %q", c.policy, got, c.want)
		}
	}
	var routes []any
	_ = json.Unmarshal([]byte(`[{"retries":{"attempts":3,"perTryTimeout":"2s","retryOn":"5xx,reset"}},{"route":[]},
		{"retries":{"attempts":3,"perTryTimeout":"2s","retryOn":"5xx,reset"}},{"retries":{"attempts":0}}]`), &routes)
	if got, want := RetrySummary(toInt64(routes).([]any)), "3 attempts, 2s per try, on 5xx,reset; no retries"; got != want {
		t.Errorf("RetrySummary = %q, want %q", got, want)
	}
	exists := func(k string) bool { return k == "shop/checkout" }
	for host, want := range map[string]bool{"checkout": true, "checkout.shop": true, "checkout.shop.svc.cluster.local": true,
		"checkout.other": false, "*.shop.svc.cluster.local": false, "api.example.com": false} {
		if _, ok := istioHostService(host, "shop", exists); ok != want {
			t.Errorf("host %q matched=%v, want %v", host, !want, want)
		}
	}
}

// toInt64 turns whole float64s into int64, as the API machinery decodes
// JSON numbers into unstructured objects.
func toInt64(v any) any {
	switch x := v.(type) {
	case float64:
		if x == float64(int64(x)) {
			return int64(x)
		}
	case map[string]any:
		for k, e := range x {
			x[k] = toInt64(e)
		}
	case []any:
		for i, e := range x {
			x[i] = toInt64(e)
		}
	}
	return v
}

// istioCRD is a minimal structural CustomResourceDefinition for an Istio
// networking resource (the real ones carry a full schema; the API server
// treats these the same for list/watch).
func istioCRD(plural, kind string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
		"metadata": map[string]any{"name": plural + "." + IstioGroup},
		"spec": map[string]any{
			"group": IstioGroup, "scope": "Namespaced",
			"names": map[string]any{"plural": plural, "singular": strings.ToLower(kind), "kind": kind, "listKind": kind + "List"},
			"versions": []any{map[string]any{
				"name": "v1", "served": true, "storage": true,
				"schema": map[string]any{"openAPIV3Schema": map[string]any{
					"type": "object", "x-kubernetes-preserve-unknown-fields": true,
				}},
			}},
		},
	}}
}

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// TestIstioPoliciesFromCRDs runs the source with exactly the ClusterRole of
// deploy/plugin-rbac.yaml against a real kube-apiserver. Before Istio is
// installed the annotations give circuit breaker and retry policy; the
// DestinationRule / VirtualService CRDs are installed after the source
// started, and the source picks them up through discovery and the dynamic
// informers: the edge recorded from an agent snapshot carries the Istio
// summaries. The same token is still refused secrets.
func TestIstioPoliciesFromCRDs(t *testing.T) {
	kc := kubeapi.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	admin := kubernetes.NewForConfigOrDie(kc.AdminConfig())
	adminDyn := dynamic.NewForConfigOrDie(kc.AdminConfig())
	c := &cluster{T: t, Ctx: ctx, Client: admin}
	cr := kc.GrantRestricted(t, pluginRBAC)
	var istioRule []string
	for _, r := range cr.Rules {
		if len(r.APIGroups) == 1 && r.APIGroups[0] == IstioGroup {
			istioRule = append(istioRule, r.Resources...)
			if strings.Join(r.Verbs, ",") != "get,list,watch" {
				t.Errorf("istio verbs %v", r.Verbs)
			}
		}
	}
	if strings.Join(istioRule, ",") != "destinationrules,virtualservices" {
		t.Fatalf("plugin-rbac.yaml grants %v on %s, want exactly destinationrules and virtualservices", istioRule, IstioGroup)
	}

	const ns = "shop"
	_, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	c.Must(err)
	coLbl, feLbl := map[string]string{"app": "checkout"}, map[string]string{"app": "frontend"}
	checkout := c.Service(ns, "checkout", coLbl, corev1.ServicePort{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)},
		map[string]string{AnnotationCircuitBreaker: "annotated breaker", AnnotationRetryPolicy: "annotated retries"})
	co := c.Pod(ns, "checkout-1", "10.244.2.7", coLbl, nil)
	c.Slice(ns, "checkout", 8080, "http", co)
	c.Service(ns, "frontend", feLbl, corev1.ServicePort{Name: "http", Port: 80, TargetPort: intstr.FromInt32(3000)}, nil)
	fe := c.Pod(ns, "frontend-1", "10.244.1.5", feLbl, nil)
	c.Slice(ns, "frontend", 3000, "http", fe)

	snap := &api.Snapshot{SchemaVersion: api.SchemaVersion, Epoch: "run-1", Node: "node-a", Seq: 1, TakenAt: time.Now().UTC().Truncate(time.Second), Namespaces: []api.Namespace{
		{PodUID: string(fe.UID), IPs: []string{"10.244.1.5"}, Connections: []api.Conn{
			conn("10.244.1.5", checkout.Spec.ClusterIP, 40000, 80, "ESTABLISHED", api.Outbound),
		}},
	}}
	feed := &fixedSnapshot{snap}
	srv, err := agent.NewServer(feed, "agent-secret", 0)
	c.Must(err)
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()

	jsonData, _ := json.Marshal(map[string]any{"kubernetes": map[string]any{
		"enabled": true, "mode": "url", "apiServerUrl": kc.URL(), "namespaces": []string{ns},
		"staticAgents": []string{strings.TrimPrefix(hs.URL, "http://")},
	}})
	settings, err := config.Parse(jsonData, map[string]string{
		"kubeToken": kc.RestrictedToken(), "kubeCACert": string(kc.CACertPEM()), "agentToken": "agent-secret"})
	c.Must(err)
	st := store.New(store.Options{Retention: time.Hour})
	src, err := New(settings, st, log.DefaultLogger)
	c.Must(err)
	src.istio.every = 100 * time.Millisecond
	defer src.Close()
	c.Must(src.WaitForSync(ctx))

	edgeInfo := func() (model.EdgeInfo, error) {
		if err := src.Refresh(ctx); err != nil {
			return model.EdgeInfo{}, err
		}
		edges, _ := st.Snapshot(snap.TakenAt.Add(-time.Minute), snap.TakenAt.Add(time.Minute), model.SourceNetwork)
		if len(edges) != 1 || edges[0].Key != (model.EdgeKey{Source: "frontend", Target: "checkout"}) {
			return model.EdgeInfo{}, fmt.Errorf("edges = %+v", edges)
		}
		return edges[0].Info, nil
	}
	// No Istio yet: the annotations.
	info, err := edgeInfo()
	c.Must(err)
	if info.CircuitBreaker != "annotated breaker" || info.RetryPolicy != "annotated retries" {
		t.Fatalf("before Istio: edge info %+v", info)
	}
	c.Must(src.Check(ctx))

	// Istio is installed after the source started.
	for _, crd := range []*unstructured.Unstructured{istioCRD(ResourceDestinationRules, "DestinationRule"), istioCRD(ResourceVirtualServices, "VirtualService")} {
		_, err := adminDyn.Resource(crdGVR).Create(ctx, crd, metav1.CreateOptions{})
		c.Must(err)
	}
	drGVR := schema.GroupVersionResource{Group: IstioGroup, Version: "v1", Resource: ResourceDestinationRules}
	vsGVR := schema.GroupVersionResource{Group: IstioGroup, Version: "v1", Resource: ResourceVirtualServices}
	create := func(gvr schema.GroupVersionResource, kind, name, spec string) {
		var sp map[string]any
		c.Must(json.Unmarshal([]byte(spec), &sp))
		obj := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": IstioGroup + "/v1", "kind": kind,
			"metadata": map[string]any{"name": name, "namespace": ns}, "spec": sp,
		}}
		eventually(t, "create "+kind, func() error { // the new CRD's endpoint takes a moment to serve
			_, err := adminDyn.Resource(gvr).Namespace(ns).Create(ctx, obj, metav1.CreateOptions{})
			return err
		})
	}
	create(drGVR, "DestinationRule", "checkout-cb", `{"host":"checkout","trafficPolicy":{
		"connectionPool":{"tcp":{"maxConnections":100},"http":{"http1MaxPendingRequests":10}},
		"outlierDetection":{"consecutive5xxErrors":5,"interval":"10s","baseEjectionTime":"30s"}}}`)
	create(vsGVR, "VirtualService", "checkout-retries", `{"hosts":["checkout.shop.svc.cluster.local"],
		"http":[{"route":[{"destination":{"host":"checkout"}}],"retries":{"attempts":3,"perTryTimeout":"2s","retryOn":"5xx,reset"}}]}`)
	// A DestinationRule for a host that is no watched Service changes nothing.
	create(drGVR, "DestinationRule", "elsewhere", `{"host":"checkout.other.svc.cluster.local","trafficPolicy":{"outlierDetection":{"consecutive5xxErrors":1}}}`)

	begin := time.Now()
	const wantCB = "outlier: 5 consecutive 5xx, every 10s, eject 30s; pool: 100 connections, 10 pending"
	const wantRetry = "3 attempts, 2s per try, on 5xx,reset"
	eventually(t, "Istio policies on the edge", func() error {
		next := *feed.snap // a new snapshot each time, so the edge is recorded again
		next.Seq++
		feed.snap = &next
		info, err := edgeInfo()
		if err != nil {
			return err
		}
		if info.CircuitBreaker != wantCB || info.RetryPolicy != wantRetry {
			src.istio.mu.Lock()
			defer src.istio.mu.Unlock()
			return fmt.Errorf("edge info %+v (istio: watching %v, last discovery error %v)", info, src.istio.gvrs, src.istio.lastErr)
		}
		return nil
	})
	t.Logf("Istio CRDs installed after start were picked up in %v", time.Since(begin).Round(time.Millisecond))
	c.Must(src.Check(ctx))

	// The frontend Service has neither: nothing invented.
	feTgt, _ := src.Index().Resolve(netip.MustParseAddr("10.244.1.5"), 3000)
	if info := src.Index().EdgeInfoFor(feTgt); info.CircuitBreaker != "" || info.RetryPolicy != "" {
		t.Errorf("frontend edge info %+v", info)
	}

	// Least privilege still: the token may read the Istio objects but not secrets.
	restricted := kubernetes.NewForConfigOrDie(kc.ConfigForToken(kc.RestrictedToken()))
	if _, err := restricted.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("restricted token listing secrets: want Forbidden, got %v", err)
	}
	restrictedDyn := dynamic.NewForConfigOrDie(kc.ConfigForToken(kc.RestrictedToken()))
	if _, err := restrictedDyn.Resource(crdGVR).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("restricted token listing CRDs: want Forbidden, got %v", err)
	}
	obj, err := restrictedDyn.Resource(drGVR).Namespace(ns).Get(ctx, "checkout-cb", metav1.GetOptions{})
	c.Must(err)
	if err := restrictedDyn.Resource(drGVR).Namespace(ns).Delete(ctx, obj.GetName(), metav1.DeleteOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("restricted token deleting a DestinationRule: want Forbidden, got %v", err)
	}
}

// Malformed Istio objects (wrong types anywhere) apply nothing and never
// panic; a well-formed one next to them still applies.
func TestMalformedIstioObjects(t *testing.T) {
	exists := func(k string) bool { return k == "shop/checkout" || k == "shop/cart" }
	obj := func(name, spec string) *unstructured.Unstructured {
		var sp any
		if err := json.Unmarshal([]byte(spec), &sp); err != nil {
			t.Fatal(err)
		}
		return &unstructured.Unstructured{Object: map[string]any{
			"metadata": map[string]any{"name": name, "namespace": "shop"}, "spec": toInt64(sp)}}
	}
	drs := []*unstructured.Unstructured{
		obj("a", `{"host":42,"trafficPolicy":{"outlierDetection":{}}}`),
		obj("b", `{"host":"checkout","trafficPolicy":"strict"}`),
		obj("c", `{"host":"checkout","trafficPolicy":{"outlierDetection":"yes","connectionPool":[1,2]}}`),
		obj("d", `"not an object"`),
		obj("e", `{"host":"cart","trafficPolicy":{"outlierDetection":{"consecutive5xxErrors":3}}}`),
	}
	vss := []*unstructured.Unstructured{
		obj("a", `{"hosts":"checkout","http":[{"retries":{"attempts":2}}]}`),
		obj("b", `{"hosts":["checkout"],"http":{"retries":{}}}`),
		obj("c", `{"hosts":["checkout"],"http":["x",null,{"retries":"many"}]}`),
		obj("d", `{"hosts":[1,"checkout"],"http":[{"retries":{"attempts":2}}]}`),
	}
	tp := buildTrafficPolicies(drs, vss, exists)
	want := trafficPolicies{breaker: map[string]string{"shop/cart": "outlier: 3 consecutive 5xx, eject 30s"}, retry: map[string]string{}}
	if fmt.Sprint(tp) != fmt.Sprint(want) {
		t.Errorf("policies %v, want %v", tp, want)
	}
}

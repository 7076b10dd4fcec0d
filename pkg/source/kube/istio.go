package kube

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
)

// IstioGroup is the API group of DestinationRule and VirtualService.
const IstioGroup = "networking.istio.io"

// Istio resources read for circuit breakers and retry policies.
const (
	ResourceDestinationRules = "destinationrules"
	ResourceVirtualServices  = "virtualservices"
)

// DefaultIstioDiscoveryInterval is how often the source looks for the Istio
// CRDs until it finds them, so CRDs installed after the plugin started are
// picked up.
const DefaultIstioDiscoveryInterval = 30 * time.Second

// istioWatch finds the Istio CRDs through discovery and, once they are
// served, watches DestinationRules and VirtualServices with dynamic
// informers in the watched namespaces.
type istioWatch struct {
	disco      discovery.DiscoveryInterface
	dyn        dynamic.Interface
	namespaces []string
	every      time.Duration

	mu        sync.Mutex
	factories []dynamicinformer.DynamicSharedInformerFactory
	gvrs      map[string]schema.GroupVersionResource // resource -> served GVR
	lastErr   error
}

// discover asks the API server which version of networking.istio.io it
// serves and which of the two resources exist. found is false while the
// group is not served (Istio not installed).
func (w *istioWatch) discover() (map[string]schema.GroupVersionResource, error) {
	groups, err := w.disco.ServerGroups()
	if err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	var gv string
	for _, g := range groups.Groups {
		if g.Name == IstioGroup {
			gv = g.PreferredVersion.GroupVersion
		}
	}
	if gv == "" {
		return nil, nil
	}
	list, err := w.disco.ServerResourcesForGroupVersion(gv)
	if err != nil {
		return nil, fmt.Errorf("discovery of %s: %w", gv, err)
	}
	parsed, err := schema.ParseGroupVersion(gv)
	if err != nil {
		return nil, err
	}
	out := map[string]schema.GroupVersionResource{}
	for _, r := range list.APIResources {
		if r.Name == ResourceDestinationRules || r.Name == ResourceVirtualServices {
			out[r.Name] = parsed.WithResource(r.Name)
		}
	}
	return out, nil
}

// run looks for the CRDs every w.every until both are watched or stop closes.
func (w *istioWatch) run(stop <-chan struct{}) {
	t := time.NewTicker(w.every)
	defer t.Stop()
	for {
		if w.step(stop) {
			return
		}
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

// step starts informers for newly served resources; done once both are.
func (w *istioWatch) step(stop <-chan struct{}) (done bool) {
	found, err := w.discover()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lastErr = err
	if err != nil {
		return false
	}
	if w.gvrs == nil {
		w.gvrs = map[string]schema.GroupVersionResource{}
	}
	var fresh []schema.GroupVersionResource
	for name, gvr := range found {
		if _, ok := w.gvrs[name]; !ok {
			w.gvrs[name] = gvr
			fresh = append(fresh, gvr)
		}
	}
	if len(fresh) > 0 {
		for _, ns := range w.namespaces {
			f := dynamicinformer.NewFilteredDynamicSharedInformerFactory(w.dyn, 0, ns, nil)
			for _, gvr := range fresh {
				f.ForResource(gvr).Informer()
			}
			f.Start(stop)
			w.factories = append(w.factories, f)
		}
	}
	return len(w.gvrs) == 2
}

// objects lists the synced DestinationRules and VirtualServices.
func (w *istioWatch) objects() (drs, vss []*unstructured.Unstructured) {
	if w == nil {
		return nil, nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, f := range w.factories {
		for name, gvr := range w.gvrs {
			inf := f.ForResource(gvr)
			if !inf.Informer().HasSynced() {
				continue
			}
			objs, _ := inf.Lister().List(labels.Everything())
			for _, o := range objs {
				u, ok := o.(*unstructured.Unstructured)
				if !ok {
					continue
				}
				if name == ResourceDestinationRules {
					drs = append(drs, u)
				} else {
					vss = append(vss, u)
				}
			}
		}
	}
	return drs, vss
}

func (w *istioWatch) shutdown() {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, f := range w.factories {
		f.Shutdown()
	}
}

// check lists each served Istio resource once, so a missing RBAC rule is
// named by CheckHealth.
func (w *istioWatch) check(ctx context.Context) error {
	found, err := w.discover()
	if err != nil {
		return fmt.Errorf("kubernetes: %w", err)
	}
	names := make([]string, 0, len(found))
	for n := range found {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		for _, ns := range w.namespaces {
			if _, err := w.dyn.Resource(found[n]).Namespace(ns).List(ctx, metav1.ListOptions{Limit: 1}); err != nil {
				return fmt.Errorf("kubernetes: listing %s.%s in %q: %w", n, IstioGroup, ns, err)
			}
		}
	}
	return nil
}

// trafficPolicies maps Services (namespace/name) to the circuit breaker
// and retry policy their DestinationRules and VirtualServices declare.
type trafficPolicies struct {
	breaker map[string]string
	retry   map[string]string
}

// istioHostService resolves an Istio host to a Service key: "name" (in the
// object's namespace), "name.ns", "name.ns.svc" or
// "name.ns.svc.<cluster domain>". Wildcards and hosts outside the cluster
// match no Service.
func istioHostService(host, objNS string, exists func(string) bool) (string, bool) {
	if host == "" || strings.Contains(host, "*") {
		return "", false
	}
	parts := strings.Split(host, ".")
	var k string
	switch {
	case len(parts) == 1:
		k = key(objNS, parts[0])
	case len(parts) == 2 || parts[2] == "svc":
		k = key(parts[1], parts[0])
	default:
		return "", false
	}
	return k, exists(k)
}

// buildTrafficPolicies reads DestinationRules (trafficPolicy.outlierDetection
// and connectionPool) and VirtualServices (http[].retries). When several
// objects name one Service, the first by namespace/name wins.
func buildTrafficPolicies(drs, vss []*unstructured.Unstructured, exists func(string) bool) trafficPolicies {
	tp := trafficPolicies{breaker: map[string]string{}, retry: map[string]string{}}
	byName := func(a, b *unstructured.Unstructured) int {
		return strings.Compare(key(a.GetNamespace(), a.GetName()), key(b.GetNamespace(), b.GetName()))
	}
	drs, vss = slices.Clone(drs), slices.Clone(vss)
	slices.SortFunc(drs, byName)
	slices.SortFunc(vss, byName)
	for _, dr := range drs {
		host, _, _ := unstructured.NestedString(dr.Object, "spec", "host")
		k, ok := istioHostService(host, dr.GetNamespace(), exists)
		if !ok {
			continue
		}
		if _, done := tp.breaker[k]; done {
			continue
		}
		pol, _, _ := unstructured.NestedMap(dr.Object, "spec", "trafficPolicy")
		if s := BreakerSummary(pol); s != "" {
			tp.breaker[k] = s
		}
	}
	for _, vs := range vss {
		hosts, _, _ := unstructured.NestedStringSlice(vs.Object, "spec", "hosts")
		routes, _, _ := unstructured.NestedSlice(vs.Object, "spec", "http")
		s := RetrySummary(routes)
		if s == "" {
			continue
		}
		for _, h := range hosts {
			if k, ok := istioHostService(h, vs.GetNamespace(), exists); ok {
				if _, done := tp.retry[k]; !done {
					tp.retry[k] = s
				}
			}
		}
	}
	return tp
}

// BreakerSummary is a short human summary of a DestinationRule
// trafficPolicy, e.g. "outlier: 5 consecutive 5xx, eject 30s; pool: 100
// connections, 10 pending". Istio's defaults fill what outlierDetection
// leaves out (5 consecutive 5xx, 30s ejection); "" when neither
// outlierDetection nor connectionPool is set.
func BreakerSummary(policy map[string]any) string {
	var parts []string
	if od, ok := policy["outlierDetection"].(map[string]any); ok {
		var o []string
		switch {
		case od["consecutive5xxErrors"] != nil:
			o = append(o, num(od["consecutive5xxErrors"])+" consecutive 5xx")
		case od["consecutiveErrors"] != nil: // deprecated name
			o = append(o, num(od["consecutiveErrors"])+" consecutive 5xx")
		case od["consecutiveGatewayErrors"] == nil:
			o = append(o, "5 consecutive 5xx")
		}
		if v := od["consecutiveGatewayErrors"]; v != nil {
			o = append(o, num(v)+" consecutive gateway errors")
		}
		if v := od["interval"]; v != nil {
			o = append(o, "every "+num(v))
		}
		eject := "30s"
		if v := od["baseEjectionTime"]; v != nil {
			eject = num(v)
		}
		o = append(o, "eject "+eject)
		if v := od["maxEjectionPercent"]; v != nil {
			o = append(o, "max "+num(v)+"% ejected")
		}
		parts = append(parts, "outlier: "+strings.Join(o, ", "))
	}
	if cp, ok := policy["connectionPool"].(map[string]any); ok {
		var p []string
		tcp, _ := cp["tcp"].(map[string]any)
		http, _ := cp["http"].(map[string]any)
		for _, f := range []struct {
			m         map[string]any
			key, text string
		}{
			{tcp, "maxConnections", "connections"},
			{http, "http1MaxPendingRequests", "pending"},
			{http, "http2MaxRequests", "requests"},
			{http, "maxRequestsPerConnection", "requests per connection"},
			{http, "maxRetries", "retries"},
		} {
			if v := f.m[f.key]; v != nil {
				p = append(p, num(v)+" "+f.text)
			}
		}
		if len(p) > 0 {
			parts = append(parts, "pool: "+strings.Join(p, ", "))
		}
	}
	return strings.Join(parts, "; ")
}

// RetrySummary summarises the retries of a VirtualService's http routes,
// e.g. "3 attempts, 2s per try, on 5xx,reset"; distinct policies of several
// routes are joined with "; ". Routes without retries are left out.
func RetrySummary(routes []any) string {
	var out []string
	for _, r := range routes {
		rm, _ := r.(map[string]any)
		ret, ok := rm["retries"].(map[string]any)
		if !ok {
			continue
		}
		var p []string
		if v := ret["attempts"]; v != nil {
			if num(v) == "0" {
				p = append(p, "no retries")
			} else {
				p = append(p, num(v)+" attempts")
			}
		}
		if v := ret["perTryTimeout"]; v != nil {
			p = append(p, num(v)+" per try")
		}
		if v, _ := ret["retryOn"].(string); v != "" {
			p = append(p, "on "+v)
		}
		if s := strings.Join(p, ", "); s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return strings.Join(out, "; ")
}

// num prints a JSON scalar (numbers decode as int64 or float64).
func num(v any) string {
	switch x := v.(type) {
	case int64:
		return fmt.Sprint(x)
	case float64:
		return fmt.Sprint(x)
	case string:
		return x
	}
	return fmt.Sprint(v)
}

package traces

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/livemap/servicemap/pkg/model"
	"github.com/livemap/servicemap/pkg/source/kube"
	"github.com/livemap/servicemap/pkg/store"
)

// kubeIndex is the Kubernetes source's own index over Services in prod and
// staging: checkout in both (qualified), frontend and catalog in prod only.
func kubeIndex(services ...[2]string) *kube.Index {
	var svcs []*corev1.Service
	for _, s := range services {
		svcs = append(svcs, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: s[0], Name: s[1]}})
	}
	return kube.BuildIndex(kube.Objects{Services: svcs}, nil)
}

func inNs(s *Span, k8sNs, serviceNs string) *Span {
	s.KubeNamespace, s.Attrs.ServiceNamespace = k8sNs, serviceNs
	return s
}

// With a Namer, a span's service lands on the Kubernetes node of its
// namespace: checkout in prod and staging are two nodes, a unique name stays
// bare, a span without a namespace keeps its service.name, and the database
// behind checkout keeps its service.namespace scope.
func TestNamerQualifiesAmbiguousServices(t *testing.T) {
	x := kubeIndex([2]string{"prod", "checkout"}, [2]string{"staging", "checkout"}, [2]string{"prod", "frontend"}, [2]string{"prod", "catalog"})
	st := store.New(store.Options{Now: func() time.Time { return t0.Add(time.Hour) }})
	p := NewPairer(30 * time.Second)
	p.SetNamer(x)
	b := store.NewBatch(model.SourceTraces)
	for _, s := range []*Span{
		inNs(span("t1", "a1", "", "frontend", KindClient, 0, 10, Attributes{HTTPMethod: "GET"}), "prod", ""),
		inNs(span("t1", "b1", "a1", "checkout", KindServer, 1, 8, Attributes{}), "prod", ""),
		inNs(span("t1", "b2", "b1", "checkout", KindClient, 2, 5, Attributes{DBSystem: "postgresql", DBNamespace: "orders"}), "prod", "shop"),
		inNs(span("t2", "a1", "", "frontend", KindClient, 0, 10, Attributes{}), "prod", ""),
		inNs(span("t2", "b1", "a1", "checkout", KindServer, 1, 8, Attributes{}), "staging", ""),
		inNs(span("t3", "a1", "", "frontend", KindClient, 0, 10, Attributes{}), "prod", ""),
		inNs(span("t3", "c1", "a1", "catalog", KindServer, 1, 8, Attributes{}), "prod", ""),
		// no k8s.namespace.name: service.namespace stands in for it
		inNs(span("t4", "a1", "", "frontend", KindClient, 0, 10, Attributes{}), "", "prod"),
		inNs(span("t4", "b1", "a1", "checkout", KindServer, 1, 8, Attributes{}), "", "staging"),
		// no namespace at all: the name as it is
		span("t5", "a1", "", "frontend", KindClient, 0, 10, Attributes{}),
		span("t5", "b1", "a1", "checkout", KindServer, 1, 8, Attributes{}),
		// a namespace Kubernetes does not know: the name as it is
		inNs(span("t6", "a1", "", "frontend", KindClient, 0, 10, Attributes{}), "dev", ""),
		inNs(span("t6", "b1", "a1", "checkout", KindServer, 1, 8, Attributes{}), "dev", ""),
	} {
		p.Add(s, b)
	}
	p.Expire(t0.Add(time.Hour), b)
	st.Apply(b)
	edges, _ := st.Snapshot(t0.Add(-time.Hour), t0.Add(time.Hour), model.AllSources)
	got := map[string][2]uint64{}
	for _, e := range edges {
		got[e.Key.ID()] = [2]uint64{e.Stats.Calls, e.Stats.Errors}
	}
	expectEdges(t, got, map[string][2]uint64{
		"frontend->checkout.prod":               {1, 0},
		"frontend->checkout.staging":            {2, 0},
		"frontend->catalog":                     {1, 0},
		"frontend->checkout":                    {2, 0},
		"checkout.prod->postgresql:orders@shop": {1, 0},
	})
}

// countingNamer counts the questions the Pairer asks.
type countingNamer struct {
	x    *kube.Index
	asks int
}

func (c *countingNamer) TraceServiceNode(ns, name string) (string, bool) {
	c.asks++
	return c.x.TraceServiceNode(ns, name)
}

// The Namer is asked once per (namespace, service.name) until it is
// replaced (a new Kubernetes index); then the answers are asked anew, so a
// Service created in a second namespace qualifies the name from then on.
func TestNamerAnswersCachedUntilReplaced(t *testing.T) {
	one := &countingNamer{x: kubeIndex([2]string{"prod", "checkout"})}
	p := NewPairer(30 * time.Second)
	p.SetNamer(one)
	b := store.NewBatch(model.SourceTraces)
	for i := range 100 {
		id := string(rune('a'+i%26)) + string(rune('a'+i/26))
		p.Add(inNs(span("t"+id, "s1", "", "checkout", KindServer, i, 1, Attributes{}), "prod", ""), b)
	}
	if one.asks != 1 {
		t.Errorf("namer asked %d times for one (namespace, name), want 1", one.asks)
	}
	two := &countingNamer{x: kubeIndex([2]string{"prod", "checkout"}, [2]string{"staging", "checkout"})}
	p.SetNamer(two)
	p.Add(inNs(span("u1", "s1", "", "checkout", KindServer, 0, 1, Attributes{}), "prod", ""), b)
	p.SetNamer(nil)
	p.Add(inNs(span("u2", "s1", "", "checkout", KindServer, 0, 1, Attributes{}), "prod", ""), b)
	st := store.New(store.Options{Now: func() time.Time { return t0.Add(time.Hour) }})
	st.Apply(b)
	edges, _ := st.Snapshot(t0.Add(-time.Hour), t0.Add(time.Hour), model.AllSources)
	got := map[string][2]uint64{}
	for _, e := range edges {
		got[e.Key.ID()] = [2]uint64{e.Stats.Calls, e.Stats.Errors}
	}
	expectEdges(t, got, map[string][2]uint64{"user->checkout": {101, 0}, "user->checkout.prod": {1, 0}})
	if two.asks != 1 {
		t.Errorf("new namer asked %d times, want 1", two.asks)
	}
}

package traces

import (
	"fmt"
	"testing"
	"time"

	"github.com/livemap/servicemap/pkg/model"
	"github.com/livemap/servicemap/pkg/store"
)

// BenchmarkPairNamed: what naming spans through the Kubernetes index adds to
// pairing. 300,000 spans (root SERVER, CLIENT, remote SERVER per trace) of
// 1,000 services, each span with its k8s.namespace.name; every other service
// also runs in a second namespace, so half the names become name.namespace.
//   - bare: no Namer (Kubernetes off), today's path;
//   - named: the Kubernetes index as Namer, answers cached per (namespace, name);
//   - cached-lookup: the naming step alone, as pairing does it (the cache);
//   - index-lookup: the alternative without the cache, kube.Index's own
//     lookup (a namespace/name key built per span), lookups only.
func BenchmarkPairNamed(b *testing.B) {
	const services, traces = 1000, 100_000
	var svcs [][2]string
	for i := range services {
		svcs = append(svcs, [2]string{"prod", fmt.Sprintf("svc-%03d", i)})
		if i%2 == 0 {
			svcs = append(svcs, [2]string{"staging", fmt.Sprintf("svc-%03d", i)})
		}
	}
	x := kubeIndex(svcs...)
	names := interner{}
	var rows []row
	for tr := range traces {
		src, dst := tr%services, (tr*7+1)%services
		ns := []string{"prod", "staging"}[tr%2]
		if src%2 == 1 || dst%2 == 1 {
			ns = "prod"
		}
		tid := fmt.Sprintf("%032x", tr+1)
		at := t0.Add(time.Duration(tr) * time.Millisecond)
		for _, s := range []*Span{
			span(tid, "0000000000000001", "", fmt.Sprintf("svc-%03d", src), KindServer, 0, 20, Attributes{HTTPMethod: "GET"}),
			span(tid, "0000000000000002", "0000000000000001", fmt.Sprintf("svc-%03d", src), KindClient, 1, 15, Attributes{RPCSystem: "grpc"}),
			span(tid, "0000000000000003", "0000000000000002", fmt.Sprintf("svc-%03d", dst), KindServer, 2, 10, Attributes{RPCSystem: "grpc"}),
		} {
			s.Start = s.Start.Add(at.Sub(t0))
			s.KubeNamespace = ns
			rows = append(rows, rowOf(s, names))
		}
	}
	run := func(b *testing.B, namer Namer) {
		work := make([]row, len(rows))
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			copy(work, rows)
			p := NewPairer(30 * time.Second)
			p.SetNamer(namer)
			batch := store.NewBatch(model.SourceTraces)
			b.StartTimer()
			for j := range work {
				p.add(&work[j], batch)
			}
			p.Expire(t0.Add(time.Hour), batch)
			if p.Calls != 2*traces {
				b.Fatalf("%d calls", p.Calls)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(rows)), "ns/span")
	}
	b.Run("bare", func(b *testing.B) { run(b, nil) })
	b.Run("named", func(b *testing.B) { run(b, x) })
	b.Run("cached-lookup", func(b *testing.B) {
		var nn nodeNames
		nn.set(x)
		n := 0
		for i := 0; i < b.N; i++ {
			for j := range rows {
				if nn.node(rows[j].kubeNs, rows[j].service) != rows[j].service {
					n++
				}
			}
		}
		if n == 0 {
			b.Fatal("nothing qualified")
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(rows)), "ns/span")
	})
	b.Run("index-lookup", func(b *testing.B) {
		n := 0
		for i := 0; i < b.N; i++ {
			for j := range rows {
				if _, ok := x.TraceServiceNode(rows[j].kubeNs, rows[j].service); ok {
					n++
				}
			}
		}
		if n != b.N*len(rows) {
			b.Fatalf("%d of %d found", n, b.N*len(rows))
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(rows)), "ns/span")
	})
}

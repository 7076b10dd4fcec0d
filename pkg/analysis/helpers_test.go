package analysis

import (
	"testing"
	"time"

	"github.com/livemap/servicemap/pkg/model"
)

var (
	t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	t1 = t0.Add(15 * time.Minute)
)

// call makes an edge with the given traffic; every call takes ms.
func call(src, dst string, calls, errs uint64, ms float64) *model.Edge {
	e := &model.Edge{Key: model.EdgeKey{Source: src, Target: dst}, Sources: model.SourceTraces,
		Info: model.EdgeInfo{Protocol: "HTTP"}, FirstSeen: t0, LastSeen: t1}
	e.Stats.Calls, e.Stats.Errors = calls, errs
	if calls > 0 {
		e.Stats.Latency.AddN(ms, calls)
		e.Stats.LatencySumMs = ms * float64(calls)
	}
	return e
}

// Under the default SLO (red at 1 % errors or p99 > 500 ms, yellow from 80 %
// of either) these come out green, yellow and red.
func ok(src, dst string) *model.Edge   { return call(src, dst, 1000, 0, 50) }
func warn(src, dst string) *model.Edge { return call(src, dst, 1000, 9, 50) }   // 0.9 %
func fail(src, dst string) *model.Edge { return call(src, dst, 1000, 100, 50) } // 10 %

// failN is red with n errors per 1000 calls, to order culprits by error rate.
func failN(src, dst string, n uint64) *model.Edge { return call(src, dst, 1000, n, 50) }

// build makes a graph; nodes named "user" are the virtual user node and
// names starting "ext:" are external peers.
func build(edges ...*model.Edge) *model.Graph {
	infos := map[string]model.NodeInfo{}
	for _, e := range edges {
		for _, id := range []string{e.Key.Source, e.Key.Target} {
			switch {
			case id == model.UserNodeID:
				infos[id] = model.NodeInfo{ID: id, Kind: model.KindUser}
			case len(id) > 4 && id[:4] == "ext:":
				infos[id] = model.NodeInfo{ID: id, Kind: model.KindExternal}
			}
		}
	}
	return model.Build(t0, t1, edges, infos, model.SLOs{Default: model.DefaultSLO})
}

func wantHealth(t *testing.T, g *model.Graph, want map[string]model.Health) {
	t.Helper()
	for id, h := range want {
		if got := g.Node(id).Health; got != h {
			t.Fatalf("fixture: %s is %v, want %v", id, got, h)
		}
	}
}

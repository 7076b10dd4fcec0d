package analysis

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/livemap/servicemap/pkg/model"
)

const (
	benchLayers = 100
	benchWidth  = 100 // 10,000 services
	benchFanOut = 3   // ~30,000 calls
)

var (
	benchOnce   sync.Once
	benchGraph  *model.Graph // a quarter of the calls red
	benchAllRed *model.Graph
)

func benchName(layer, i int) string { return fmt.Sprintf("svc-%02d-%02d", layer, i) }

// layered builds a 10,000-service layered DAG: each service calls three in
// the next layer, the user node calls the first layer, and 50 calls go back
// five layers to make cycles. Every redEvery-th call fails.
func layered(redEvery int) *model.Graph {
	var edges []*model.Edge
	n := 0
	mk := func(src, dst string) {
		if n++; n%redEvery == 0 {
			edges = append(edges, fail(src, dst))
		} else {
			edges = append(edges, ok(src, dst))
		}
	}
	seed := uint32(1)
	rnd := func(m int) int { seed = seed*1664525 + 1013904223; return int(seed>>8) % m }
	for i := range benchWidth {
		mk(model.UserNodeID, benchName(0, i))
	}
	for l := range benchLayers - 1 {
		for i := range benchWidth {
			seen := map[int]bool{}
			for len(seen) < benchFanOut {
				j := rnd(benchWidth)
				if !seen[j] {
					seen[j] = true
					mk(benchName(l, i), benchName(l+1, j))
				}
			}
		}
	}
	for k := range 50 {
		l := 5 + rnd(benchLayers-5)
		mk(benchName(l, rnd(benchWidth)), benchName(l-5, k))
	}
	return build(edges...)
}

func benchGraphs(b *testing.B) {
	benchOnce.Do(func() {
		benchGraph = layered(4)
		benchAllRed = layered(1)
	})
	b.ResetTimer()
}

// cpuPerOp reports the process CPU time per iteration; call it with the
// reading taken before the loop, after the loop.
func cpuPerOp(b *testing.B, before time.Duration) {
	if cpu := processCPU() - before; cpu > 0 && b.N > 0 {
		b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/op")
	}
}

// The deepest service: nearly the whole graph is upstream of it.
func BenchmarkImpact(b *testing.B) {
	benchGraphs(b)
	cpu := processCPU()
	for b.Loop() {
		s, err := Impact(benchGraph, benchName(benchLayers-1, 7))
		if err != nil || len(s.Upstream) < 9000 {
			b.Fatalf("%v, %d upstream", err, len(s.Upstream))
		}
	}
	cpuPerOp(b, cpu)
	b.ReportMetric(float64(len(benchGraph.Edges)), "edges")
}

func BenchmarkRootCause(b *testing.B) {
	benchGraphs(b)
	for _, tc := range []struct {
		name string
		g    *model.Graph
	}{{"quarter-red", benchGraph}, {"all-red", benchAllRed}} {
		b.Run(tc.name, func(b *testing.B) {
			cpu := processCPU()
			for b.Loop() {
				if r := RootCause(tc.g, benchName(0, 3)); r.Cause != CauseDownstream {
					b.Fatalf("%+v", r.Verdict)
				}
			}
			cpuPerOp(b, cpu)
		})
	}
}

func BenchmarkRecoveryOrder(b *testing.B) {
	benchGraphs(b)
	all := make([]string, 0, len(benchGraph.Nodes))
	for _, n := range benchGraph.Nodes {
		if n.ID() != model.UserNodeID {
			all = append(all, n.ID())
		}
	}
	b.Run("all-10000", func(b *testing.B) {
		cpu := processCPU()
		for b.Loop() {
			if steps, err := RecoveryOrder(benchGraph, all); err != nil || len(steps) == 0 {
				b.Fatal(err)
			}
		}
		cpuPerOp(b, cpu)
	})
	b.Run("affected-set", func(b *testing.B) {
		cpu := processCPU()
		defer cpuPerOp(b, cpu)
		for b.Loop() {
			set, err := AffectedSet(benchGraph, benchName(benchLayers-1, 7))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := RecoveryOrder(benchGraph, set); err != nil {
				b.Fatal(err)
			}
		}
	})
}

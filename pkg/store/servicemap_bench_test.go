package store_test

// Benchmarks of the in-memory path of a service-map query, and of the
// store's memory for a full day. They only run with -bench; the day of data
// is built lazily, once per test binary, inside the first benchmark that
// needs it (see scripts/bench.sh and docs/BENCHMARKS.md).

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/livemap/servicemap/internal/testenv"
	"github.com/livemap/servicemap/pkg/frames"
	"github.com/livemap/servicemap/pkg/model"
	"github.com/livemap/servicemap/pkg/store"
)

const (
	benchServices     = 1000
	benchEdges        = 5000
	benchCallsPerMin  = 60 // calls per edge and minute
	benchMinutes      = 24 * 60
	benchLatencyTable = 1 << 14
)

// benchNow is the store's fixed clock: the end of the benchmarked day.
var benchNow = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// benchEdgeKeys are 5,000 distinct edges between 1,000 services: every
// service calls 5 others.
func benchEdgeKeys() []model.EdgeKey {
	keys := make([]model.EdgeKey, 0, benchEdges)
	for i := 0; i < benchEdges; i++ {
		src, k := i%benchServices, i/benchServices
		dst := (src + 1 + k*101) % benchServices
		keys = append(keys, model.EdgeKey{Source: fmt.Sprintf("svc-%03d", src), Target: fmt.Sprintf("svc-%03d", dst)})
	}
	return keys
}

// lognormal latencies (median 20 ms, sigma 0.6), scaled per edge.
func latencyTable() []float64 {
	r := rand.New(rand.NewPCG(1, 2))
	t := make([]float64, benchLatencyTable)
	for i := range t {
		t[i] = math.Exp(math.Log(20) + 0.6*r.NormFloat64())
	}
	return t
}

// fillDay puts 24 h of traffic into st: every edge, every minute, 60 calls
// with lognormal latencies, 1 % failing. Batches are built per hour, two
// hours at a time (2 cores), then Maintain packs closed buckets once.
func fillDay(st *store.Store) (calls uint64) {
	keys := benchEdgeKeys()
	lat := latencyTable()
	start := benchNow.Add(-24 * time.Hour)
	scale := make([]float64, len(keys))
	for i := range scale {
		scale[i] = 0.5 + float64(i%10)/5 // 0.5x .. 2.3x
	}
	build := func(hour int) *store.Batch {
		r := rand.New(rand.NewPCG(uint64(hour), 7))
		b := store.NewBatch(model.SourceTraces)
		for m := 0; m < 60; m++ {
			minute := start.Add(time.Duration(hour*60+m) * time.Minute)
			for ei, k := range keys {
				for c := 0; c < benchCallsPerMin; c++ {
					at := minute.Add(time.Duration(c) * time.Second)
					b.AddCall(k, at, lat[r.IntN(benchLatencyTable)]*scale[ei], r.IntN(100) == 0)
				}
			}
		}
		return b
	}
	for h := 0; h < 24; h += 2 {
		var b2 *store.Batch
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); b2 = build(h + 1) }()
		b1 := build(h)
		wg.Wait()
		st.Apply(b1)
		st.Apply(b2)
	}
	st.Maintain()
	return uint64(len(keys)) * benchMinutes * benchCallsPerMin
}

var day struct {
	once         sync.Once
	st           *store.Store
	baseHeap     uint64 // HeapAlloc after GC before the fill
	fill         time.Duration
	calls        uint64
	heapWithData uint64
}

// dayStore returns the shared store with a day of traffic.
func dayStore(b *testing.B) *store.Store {
	day.once.Do(func() {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		day.baseHeap = ms.HeapAlloc
		day.st = store.New(store.Options{Now: func() time.Time { return benchNow }})
		t0 := time.Now()
		day.calls = fillDay(day.st)
		day.fill = time.Since(t0)
		runtime.GC()
		runtime.ReadMemStats(&ms)
		day.heapWithData = ms.HeapAlloc
		b.Logf("filled %d calls on %d edges in %v; %+v", day.calls, benchEdges, day.fill, day.st.Size())
	})
	return day.st
}

// reportLatencies adds mean and p99 over the iterations in milliseconds.
// BenchmarkServiceMapDirect: Snapshot over 24 h + model.Build +
// frames.NodeGraph on 1,000 services / 5,000 edges, no transport.
func BenchmarkServiceMapDirect(b *testing.B) {
	st := dayStore(b)
	from, to := benchNow.Add(-24*time.Hour), benchNow
	slos := model.SLOs{}
	ds := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		edges, infos := st.Snapshot(from, to, model.AllSources)
		g := model.Build(from, to, edges, infos, slos)
		nodes, ef := frames.NodeGraph(g, frames.Links{}, nil)
		ds = append(ds, time.Since(t0))
		if nodes.Rows() != benchServices || ef.Rows() != benchEdges {
			b.Fatalf("%d nodes, %d edges", nodes.Rows(), ef.Rows())
		}
	}
	b.StopTimer()
	testenv.ReportLatencies(b, ds)
}

// BenchmarkServiceMapDirectParts splits the direct path into its steps.
func BenchmarkServiceMapDirectParts(b *testing.B) {
	st := dayStore(b)
	from, to := benchNow.Add(-24*time.Hour), benchNow
	b.Run("Snapshot", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			st.Snapshot(from, to, model.AllSources)
		}
	})
	b.Run("Build", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			edges, infos := st.Snapshot(from, to, model.AllSources)
			b.StartTimer()
			model.Build(from, to, edges, infos, model.SLOs{})
		}
	})
	b.Run("NodeGraph", func(b *testing.B) {
		edges, infos := st.Snapshot(from, to, model.AllSources)
		g := model.Build(from, to, edges, infos, model.SLOs{})
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			frames.NodeGraph(g, frames.Links{}, nil)
		}
	})
}

// BenchmarkEdgeMetricsNumeric: the numeric edgeMetrics form (one value
// per edge over 24 h, numeric-wide frame) without the plugin's query plumbing.
func BenchmarkEdgeMetricsNumeric(b *testing.B) {
	st := dayStore(b)
	from, to := benchNow.Add(-24*time.Hour), benchNow
	secs := to.Sub(from).Seconds()
	ds := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		edges, _ := st.Snapshot(from, to, model.AllSources)
		series := make([]frames.EdgeSeries, 0, len(edges))
		for _, e := range edges {
			series = append(series, frames.EdgeSeries{Key: e.Key, Protocol: e.Info.Protocol,
				Values: []*float64{frames.MetricValue("p99_latency_ms", e, secs)}})
		}
		slices.SortFunc(series, func(a, b frames.EdgeSeries) int {
			if a.Key.Source != b.Key.Source {
				if a.Key.Source < b.Key.Source {
					return -1
				}
				return 1
			}
			if a.Key.Target < b.Key.Target {
				return -1
			} else if a.Key.Target > b.Key.Target {
				return 1
			}
			return 0
		})
		f := frames.NumericWide("p99_latency_ms", series, nil)
		ds = append(ds, time.Since(t0))
		if len(f.Fields) != benchEdges {
			b.Fatalf("%d fields", len(f.Fields))
		}
	}
	b.StopTimer()
	testenv.ReportLatencies(b, ds)
}

// BenchmarkMemory24h: Go heap in use after GC with the day of traffic in the
// store, and the store's own accounting. One iteration is one measurement.
func BenchmarkMemory24h(b *testing.B) {
	st := dayStore(b)
	var ms runtime.MemStats
	for i := 0; i < b.N; i++ {
		runtime.GC()
		runtime.ReadMemStats(&ms)
	}
	sz := st.Size()
	b.ReportMetric(float64(ms.HeapAlloc)/(1<<20), "heap-MB")
	b.ReportMetric(float64(int64(day.heapWithData)-int64(day.baseHeap))/(1<<20), "store-heap-MB")
	b.ReportMetric(float64(sz.Series), "series")
	b.ReportMetric(float64(sz.FineBuckets), "fine-buckets")
	b.ReportMetric(float64(sz.CoarseBuckets), "coarse-buckets")
	b.ReportMetric(float64(sz.HistogramBytes)/(1<<20), "hist-MB")
	b.ReportMetric(day.fill.Seconds(), "fill-s")
	b.Logf("Size() = %+v; heap after GC %d B (%d B before the fill); %d calls", sz, ms.HeapAlloc, day.baseHeap, day.calls)
	runtime.KeepAlive(st)
}

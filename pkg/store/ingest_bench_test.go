package store_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/livemap/servicemap/pkg/model"
	"github.com/livemap/servicemap/pkg/store"
)

// Backfill-shaped writes: a day of traces read in 5-minute windows, the
// shape of BenchmarkIngestSpans (pkg/source/traces) without PostgreSQL —
// 1,333,332 calls (666,666 traces of two calls) over 5,000 edges, so most
// (edge, minute) cells hold one call, and one AddEdgeInfo per call as the
// span pairing does.
const (
	backfillCalls   = 1_333_332
	backfillWindows = 24 * 12
)

func backfillWindow(b *store.Batch, w int, keys []model.EdgeKey, lat []float64, info []model.EdgeInfo) {
	r := rand.New(rand.NewPCG(uint64(w), 3))
	start := benchNow.Add(-24 * time.Hour).Add(time.Duration(w) * 5 * time.Minute)
	for range backfillCalls / backfillWindows {
		ei := r.IntN(len(keys))
		at := start.Add(time.Duration(r.Int64N(int64(5 * time.Minute))))
		b.AddCall(keys[ei], at, lat[r.IntN(benchLatencyTable)], r.IntN(100) == 0)
		b.AddEdgeInfo(keys[ei], info[ei%len(info)])
	}
}

// BenchmarkBackfill: per op, a day of 5-minute window batches built
// (batch: a new batch per window, AddCall + AddEdgeInfo; batch-reused: one
// batch reset between windows) or applied to an empty store followed by one
// Maintain (apply). ns/call is per call of the day.
func BenchmarkBackfill(b *testing.B) {
	keys := benchEdgeKeys()
	lat := latencyTable()
	info := []model.EdgeInfo{{Protocol: "gRPC"}, {Protocol: "HTTP"}}
	b.Run("batch", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for w := range backfillWindows {
				backfillWindow(store.NewBatch(model.SourceTraces), w, keys, lat, info)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/backfillCalls, "ns/call")
	})
	// one batch per source, sized once and reset between windows
	b.Run("batch-reused", func(b *testing.B) {
		b.ReportAllocs()
		bt := store.NewBatchSize(model.SourceTraces, len(keys))
		for b.Loop() {
			for w := range backfillWindows {
				bt.Reset()
				backfillWindow(bt, w, keys, lat, info)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/backfillCalls, "ns/call")
	})
	b.Run("apply", func(b *testing.B) {
		batches := make([]*store.Batch, backfillWindows)
		for w := range batches {
			batches[w] = store.NewBatch(model.SourceTraces)
			backfillWindow(batches[w], w, keys, lat, info)
		}
		b.ReportAllocs()
		for b.Loop() {
			st := store.New(store.Options{Now: func() time.Time { return benchNow }})
			for _, bt := range batches {
				st.Apply(bt)
			}
			st.Maintain()
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/backfillCalls, "ns/call")
	})
}

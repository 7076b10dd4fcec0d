package store

import (
	"bytes"
	"math"
	"math/rand/v2"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/livemap/servicemap/pkg/model"
	"github.com/livemap/servicemap/pkg/sketch"
)

// referenceRange is the straightforward range sum: every bucket visit picks,
// merged one by one in time order (what rangeStats did before it kept a
// running total of the hour histograms).
func referenceRange(ser *series, from, to, fineFrom int64) (model.Stats, int64) {
	var st model.Stats
	if ser == nil {
		return st, 0
	}
	last := ser.visit(from, to, fineFrom, func(b *bucket, _ int) { st.Add(&b.stats) })
	return st, last
}

// canonical is a histogram's bins without empty bins at the ends, so two
// histograms holding the same counts compare equal whatever their extent.
func canonical(t *testing.T, l *sketch.Latency) []byte {
	t.Helper()
	c := l.Clone()
	c.Pack()
	b, err := c.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type event struct {
	at     int64
	edge   model.EdgeKey
	source model.Source
	ms     float64 // latency; negative: an untimed call
}

// TestRangeStatsMatchesReference is a property test: random traffic with
// late writes into old (packed) hour and minute buckets, a clock that moves
// on with retention expiring hours, and random ranges — every range's stats
// from the fast path must equal the one-by-one merge exactly (counters, the
// float latency sum to the bit, every histogram bin, the latest event), and
// the calls must be those of the events in the range widened to the buckets
// that overlap it. The write path is held to the events too: over the whole
// retention every series' histogram holds exactly the events' latencies
// (batches are reused with Reset, cells hold one call or many, some calls
// are untimed).
func TestRangeStatsMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 23))
	start := time.Date(2026, 11, 23, 7, 17, 0, 0, time.UTC)
	s, clk := newStore(start)
	edges := []model.EdgeKey{ab, bc, {Source: "c", Target: "d"}}
	sources := []model.Source{model.SourceTraces, model.SourceGateway}
	var events []event
	fastRuns := 0
	batches := map[model.Source]*Batch{}
	var kept int64 // events before this are gone: the cut-off of the last Maintain
	for step := 0; step < 150; step++ {
		clk.t = clk.t.Add(time.Duration(r.IntN(40)) * time.Minute).Add(time.Duration(r.IntN(60)) * time.Second)
		now := clk.t.Unix()
		_, coarseFrom := s.cutoffs(clk.t)
		for _, src := range sources {
			b := batches[src]
			if b == nil {
				b = NewBatchSize(src, 2)
				batches[src] = b
			}
			b.Reset()
			for i := 0; i < 40; i++ {
				var at int64
				switch r.IntN(4) {
				case 0: // late: anywhere in the retention, or a bit before it
					at = now - r.Int64N(25*3600)
				default: // recent
					at = now - r.Int64N(20*60)
				}
				e := edges[r.IntN(len(edges))]
				ms := math.Exp(math.Log(20) + 1.5*r.NormFloat64())
				if r.IntN(10) == 0 {
					ms = -1
				}
				b.AddCall(e, time.Unix(at, int64(r.IntN(1e9))), ms, r.IntN(7) == 0)
				if r.IntN(2) == 0 {
					b.AddEdgeInfo(e, model.EdgeInfo{Protocol: "gRPC"})
				}
				if at-mod(at, fineWidth) >= coarseFrom {
					events = append(events, event{at, e, src, ms})
				}
			}
			s.Apply(b)
		}
		if r.IntN(3) == 0 {
			s.Maintain()
			kept = coarseFrom
		}

		fineFrom, coarseFrom := s.cutoffs(clk.t)
		for key, ser := range s.series {
			var want sketch.Latency
			var calls uint64
			for _, ev := range events {
				if ev.edge == key.edge && ev.source == key.source && ev.at >= coarseFrom {
					calls++
					if ev.ms >= 0 {
						want.Add(ev.ms)
					}
				}
			}
			var got model.Stats
			ser.rangeStats(coarseFrom, now+1, fineFrom, &got)
			if got.Calls != calls || !bytes.Equal(canonical(t, &got.Latency), canonical(t, &want)) {
				t.Fatalf("step %d %v: retention holds %d calls %v, the events %d %v", step, key, got.Calls, &got.Latency, calls, &want)
			}
		}
		ranges := [][2]int64{{now - 24*3600, now}, {coarseFrom, now + 1}, {now - 6*3600, now}}
		for i := 0; i < 20; i++ {
			from := now - r.Int64N(26*3600)
			if r.IntN(3) == 0 {
				from -= mod(from, coarseWidth)
			}
			ranges = append(ranges, [2]int64{from, from + 1 + r.Int64N(26*3600)})
		}
		for _, rg := range ranges {
			from, to := rg[0], rg[1]
			// the joined edges carry the first source with calls: traces, then gateway
			snap, _ := s.Snapshot(time.Unix(from, 0), time.Unix(to, 0), model.AllSources)
			for _, e := range snap {
				want, _ := referenceRange(s.series[seriesKey{e.Key, model.SourceTraces}], from, to, fineFrom)
				if want.Calls == 0 {
					want, _ = referenceRange(s.series[seriesKey{e.Key, model.SourceGateway}], from, to, fineFrom)
				}
				if e.Stats.Calls != want.Calls || math.Float64bits(e.Stats.LatencySumMs) != math.Float64bits(want.LatencySumMs) ||
					!bytes.Equal(canonical(t, &e.Stats.Latency), canonical(t, &want.Latency)) {
					t.Fatalf("step %d Snapshot [%d,%d) %v: %d calls %v, want %d %v", step, from, to, e.Key, e.Stats.Calls, &e.Stats.Latency, want.Calls, &want.Latency)
				}
			}
			for key, ser := range s.series {
				want, wantLast := referenceRange(ser, from, to, fineFrom)
				var got model.Stats
				gotLast := ser.rangeStats(from, to, fineFrom, &got)
				if got.Calls != want.Calls || got.Errors != want.Errors || got.Connections != want.Connections ||
					math.Float64bits(got.LatencySumMs) != math.Float64bits(want.LatencySumMs) || gotLast != wantLast {
					t.Fatalf("step %d %v [%d,%d): got calls %d errors %d sum %v last %d, want %d %d %v %d",
						step, key, from, to, got.Calls, got.Errors, got.LatencySumMs, gotLast, want.Calls, want.Errors, want.LatencySumMs, wantLast)
				}
				if got.Latency.Count() != want.Latency.Count() || !bytes.Equal(canonical(t, &got.Latency), canonical(t, &want.Latency)) {
					t.Fatalf("step %d %v [%d,%d): histogram %v, want %v", step, key, from, to, &got.Latency, &want.Latency)
				}
				if from-mod(from, coarseWidth) == coarseFrom && to > now && len(ser.coarse) > 2 {
					fastRuns++
				}
				// truth from the events: everything inside counts, nothing
				// outside the hour buckets that overlap the range
				var inside, covering uint64
				lo, hi := from-mod(from, coarseWidth), to+mod(-to, coarseWidth)
				for _, ev := range events {
					if ev.edge != key.edge || ev.source != key.source || ev.at < kept {
						continue
					}
					if ev.at >= from && ev.at < to {
						inside++
					}
					if ev.at >= lo && ev.at < hi {
						covering++
					}
				}
				if got.Calls < inside || got.Calls > covering {
					t.Fatalf("step %d %v [%d,%d): %d calls, want between %d (events inside) and %d (events in the overlapping hours)",
						step, key, from, to, got.Calls, inside, covering)
				}
			}
		}
	}
	if fastRuns < 100 {
		t.Fatalf("only %d whole-retention checks: the running-total path was hardly exercised", fastRuns)
	}
}

// TestHourTotalFollowsExpiry: after hours expire, the running total is
// exactly the merge of the hour buckets still kept.
func TestHourTotalFollowsExpiry(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	s, clk := newStore(now)
	b := NewBatch(model.SourceTraces)
	for i := 0; i < 24*60; i++ {
		b.AddCall(ab, now.Add(-24*time.Hour).Add(time.Duration(i)*time.Minute), float64(1+i/60), false)
	}
	s.Apply(b)
	check := func(wantCalls uint64) {
		t.Helper()
		ser := s.series[seriesKey{ab, model.SourceTraces}]
		var sum sketch.Latency
		for i := range ser.coarse {
			sum.Merge(&ser.coarse[i].stats.Latency)
		}
		if ser.hours.Count() != wantCalls || !bytes.Equal(canonical(t, &ser.hours), canonical(t, &sum)) {
			t.Fatalf("running total %v (%d), merge of the kept hours %v, want %d latencies", &ser.hours, ser.hours.Count(), &sum, wantCalls)
		}
	}
	check(24 * 60)
	clk.t = now.Add(5*time.Hour + 30*time.Minute)
	s.Maintain()
	check(19 * 60) // hours 12:00..16:00 of the first day expired
	if p := s.series[seriesKey{ab, model.SourceTraces}].hours.Quantile(0); p < 5.9 || p > 6.1 {
		t.Fatalf("fastest latency left %v ms, want 6 (the first 5 hours' 1..5 ms expired)", p)
	}
	clk.t = now.Add(25 * time.Hour)
	s.Maintain()
	if len(s.series) != 0 {
		t.Fatalf("%d series left after everything expired", len(s.series))
	}
}

// TestSnapshotSplitOverCores: a store large enough for rangeAll to split the
// series over cores gives every edge exactly the one-by-one merge (run it
// with -race as well).
func TestSnapshotSplitOverCores(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	r := rand.New(rand.NewPCG(5, 6))
	now := time.Date(2026, 11, 23, 12, 20, 0, 0, time.UTC)
	s, _ := newStore(now)
	b := NewBatch(model.SourceTraces)
	const edges = 4 * parallelMinSeries
	for i := 0; i < edges; i++ {
		e := model.EdgeKey{Source: "s" + strconv.Itoa(i), Target: "t"}
		for j := 0; j < 30; j++ {
			b.AddCall(e, now.Add(-time.Duration(r.Int64N(int64(24*time.Hour)))), math.Exp(4*r.Float64()), r.IntN(9) == 0)
		}
	}
	s.Apply(b)
	s.Maintain()
	fineFrom, _ := s.cutoffs(now)
	for _, back := range []time.Duration{24 * time.Hour, 7 * time.Hour, 30 * time.Minute} {
		from := now.Add(-back)
		snap, _ := s.Snapshot(from, now, model.AllSources)
		calls := uint64(0)
		for _, e := range snap {
			want, wantLast := referenceRange(s.series[seriesKey{e.Key, model.SourceTraces}], from.Unix(), now.Unix(), fineFrom)
			if e.Stats.Calls != want.Calls || e.Stats.Errors != want.Errors || e.LastSeen.Unix() != wantLast ||
				math.Float64bits(e.Stats.LatencySumMs) != math.Float64bits(want.LatencySumMs) ||
				!bytes.Equal(canonical(t, &e.Stats.Latency), canonical(t, &want.Latency)) {
				t.Fatalf("last %v, %v: %d calls %v, want %d %v", back, e.Key, e.Stats.Calls, &e.Stats.Latency, want.Calls, &want.Latency)
			}
			calls += e.Stats.Calls
		}
		if back == 24*time.Hour && (len(snap) != edges || calls != edges*30) {
			t.Fatalf("whole day: %d edges, %d calls, want %d and %d", len(snap), calls, edges, edges*30)
		}
	}
}

package store

import (
	"fmt"
	"math"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/axiomhq/hyperloglog"

	"github.com/livemap/servicemap/pkg/model"
)

// within reports whether an HLL estimate is within 3 standard errors
// (precision 14: 0.81 %) of the truth, and at least within 1 for tiny sets
// (the sparse representation is exact for small counts).
func within(got uint64, want int) bool {
	tol := math.Max(1, 3*0.0081*float64(want))
	return math.Abs(float64(got)-float64(want)) <= tol
}

func TestEntryClientsMergeNotSum(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 30, 0, 0, time.UTC)
	s, clk := newStore(now)
	userShop := model.EdgeKey{Source: model.UserNodeID, Target: "shop"}
	partnerShop := model.EdgeKey{Source: "partner", Target: "shop"}
	userAPI := model.EdgeKey{Source: model.UserNodeID, Target: "api"}
	b := NewBatch(model.SourceGateway)
	// 3000 clients on shop, each seen in every one of the last 5 hours (so
	// a sum would say 15000) and half of them also through the partner edge.
	for h := 0; h < 5; h++ {
		at := now.Add(-time.Duration(h)*time.Hour - 10*time.Minute)
		for c := 0; c < 3000; c++ {
			key := fmt.Sprintf("client-%d", c)
			b.AddCall(userShop, at, 10, false)
			b.AddClient(userShop, at, key)
			if c%2 == 0 {
				b.AddClient(partnerShop, at, key)
			}
		}
	}
	// api: 40 clients, 2 of which also use shop
	for c := 2998; c < 3038; c++ {
		b.AddClient(userAPI, now.Add(-2*time.Minute), fmt.Sprintf("client-%d", c))
	}
	// traces never carry client sketches
	tb := NewBatch(model.SourceTraces)
	tb.AddCall(model.EdgeKey{Source: model.UserNodeID, Target: "other"}, now.Add(-time.Minute), 5, false)
	s.Apply(b)
	s.Apply(tb)

	got := s.EntryClients(now.Add(-6*time.Hour), now)
	if len(got) != 2 || got["shop"] == nil || got["api"] == nil {
		t.Fatalf("entries %v, want shop and api only", keys(got))
	}
	if e := got["shop"].Estimate(); !within(e, 3000) {
		t.Errorf("shop over 6 h: %d distinct clients, want 3000 ± 0.81 %% × 3", e)
	}
	if e := got["api"].Estimate(); e != 40 {
		t.Errorf("api: %d, want exactly 40 (sparse HLL is exact this small)", e)
	}
	// only the last minutes: the api clients and shop's newest hour
	recent := s.EntryClients(now.Add(-15*time.Minute), now)
	if e := recent["shop"].Estimate(); !within(e, 3000) {
		t.Errorf("shop over 15 min: %d, want 3000", e)
	}
	// the store's own sketch is untouched by a caller merging into it
	u := recent["shop"]
	_ = u.Merge(recent["api"])
	if e := s.EntryClients(now.Add(-15*time.Minute), now)["shop"].Estimate(); !within(e, 3000) {
		t.Errorf("store sketch changed by a caller's merge: %d", e)
	}
	// non-gateway buckets carry no sketch
	if st := s.Size(); st.ClientSketches == 0 || st.ClientSketches >= st.FineBuckets+st.CoarseBuckets {
		t.Errorf("client sketches in %d of %d buckets", st.ClientSketches, st.FineBuckets+st.CoarseBuckets)
	}
	// retention: after 24 h more, nothing is left
	clk.t = now.Add(30 * time.Hour)
	s.Maintain()
	if left := s.EntryClients(now.Add(-48*time.Hour), now.Add(48*time.Hour)); len(left) != 0 {
		t.Errorf("after retention: %v", keys(left))
	}
}

func TestAddAggregateMergesSketches(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 30, 0, 0, time.UTC)
	s, _ := newStore(now)
	e := model.EdgeKey{Source: model.UserNodeID, Target: "shop"}
	mk := func(from, to int) *hyperloglog.Sketch {
		sk := hyperloglog.New14()
		for i := from; i < to; i++ {
			sk.Insert([]byte(fmt.Sprint(i)))
		}
		return sk
	}
	b := NewBatch(model.SourceGateway)
	var st model.Stats
	st.Calls, st.Errors, st.LatencySumMs = 10, 2, 100
	st.Latency.Add(10)
	// two agents behind one load balancer report the same minute: clients overlap
	if err := b.AddAggregate(e, now.Add(-5*time.Minute), &st, mk(0, 100)); err != nil {
		t.Fatal(err)
	}
	if err := b.AddAggregate(e, now.Add(-5*time.Minute).Add(30*time.Second), &st, mk(50, 150)); err != nil {
		t.Fatal(err)
	}
	s.Apply(b)
	if got := s.EntryClients(now.Add(-time.Hour), now)["shop"].Estimate(); got != 150 {
		t.Errorf("clients %d, want 150 (union, not 200)", got)
	}
	edges, _ := s.Snapshot(now.Add(-time.Hour), now, model.AllSources)
	if len(edges) != 1 || edges[0].Stats.Calls != 20 || edges[0].Stats.Errors != 4 || edges[0].Sources != model.SourceGateway {
		t.Fatalf("edges %+v", edges)
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// BenchmarkClientSketchMemory measures the heap a day of client sketches
// takes: 200 entry services, each with 24 hour buckets and 60 minute buckets,
// for a given number of distinct clients per service and minute.
func BenchmarkClientSketchMemory(b *testing.B) {
	for _, perMinute := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("clients=%d/minute", perMinute), func(b *testing.B) {
			now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
			var bytesPerBucket float64
			for i := 0; i < b.N; i++ {
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				s := New(Options{Retention: 24 * time.Hour, FineWindow: time.Hour, Now: func() time.Time { return now }})
				for svc := 0; svc < 200; svc++ {
					edge := model.EdgeKey{Source: model.UserNodeID, Target: fmt.Sprintf("svc-%d", svc)}
					bt := NewBatch(model.SourceGateway)
					for m := 0; m < 24*60; m += 1 {
						at := now.Add(-time.Duration(m+1) * time.Minute)
						for c := 0; c < perMinute; c++ {
							bt.AddClient(edge, at, fmt.Sprintf("c-%d-%d", m%60, c)) // clients recur every hour
						}
					}
					s.Apply(bt)
				}
				s.Maintain()
				runtime.GC()
				runtime.ReadMemStats(&after)
				st := s.Size()
				bytesPerBucket = float64(after.HeapAlloc-before.HeapAlloc) / float64(st.ClientSketches)
				runtime.KeepAlive(s)
			}
			b.ReportMetric(bytesPerBucket, "bytes/bucket")
		})
	}
}

// BenchmarkSketchBytes compares the heap of one client sketch holding k
// distinct keys in the form the store keeps (hyperloglog.New14: sparse
// until it pays to go dense) with the dense form (NewNoSparse), the
// alternative of a fixed 16 KiB register array per bucket.
func BenchmarkSketchBytes(b *testing.B) {
	for _, k := range []int{10, 100, 1000, 10000} {
		for _, form := range []struct {
			name string
			mk   func() *hyperloglog.Sketch
		}{{"sparse", hyperloglog.New14}, {"dense", hyperloglog.NewNoSparse}} {
			b.Run(fmt.Sprintf("k=%d/%s", k, form.name), func(b *testing.B) {
				const n = 500
				var per float64
				for i := 0; i < b.N; i++ {
					runtime.GC()
					var before, after runtime.MemStats
					runtime.ReadMemStats(&before)
					sks := make([]*hyperloglog.Sketch, n)
					for j := range sks {
						sk := form.mk()
						for c := 0; c < k; c++ {
							sk.Insert([]byte(fmt.Sprintf("c-%d-%d", j, c)))
						}
						sks[j] = sk.Clone() // the store keeps clones
					}
					runtime.GC()
					runtime.ReadMemStats(&after)
					per = float64(after.HeapAlloc-before.HeapAlloc) / n
					runtime.KeepAlive(sks)
				}
				b.ReportMetric(per, "bytes/sketch")
			})
		}
	}
}

func TestAddAggregateRefusesOtherPrecision(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 30, 0, 0, time.UTC)
	s, _ := newStore(now)
	b := NewBatch(model.SourceGateway)
	p16 := hyperloglog.New16()
	p16.Insert([]byte("x"))
	st := model.Stats{Calls: 1}
	if err := b.AddAggregate(model.EdgeKey{Source: "user", Target: "shop"}, now.Add(-time.Minute), &st, p16); err == nil || !strings.Contains(err.Error(), "precision") {
		t.Fatalf("a precision-16 sketch: %v", err)
	}
	if b.Len() != 0 {
		t.Fatalf("the refused aggregate left %d cells", b.Len())
	}
	s.Apply(b)
	if edges, _ := s.Snapshot(now.Add(-time.Hour), now, model.AllSources); len(edges) != 0 {
		t.Fatalf("phantom edge %+v", edges[0])
	}
}

// BenchmarkAddClient is the per-request cost the client count adds to
// ingest: Batch.AddCall (what a trace row costs) against AddClientCall (a
// gateway row: the same plus a HyperLogLog insert), 200 entry services, 10,000 distinct clients,
// requests spread over 5 minutes (one read window).
func BenchmarkAddClient(b *testing.B) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	edges := make([]model.EdgeKey, 200)
	for i := range edges {
		edges[i] = model.EdgeKey{Source: model.UserNodeID, Target: fmt.Sprintf("svc-%d", i)}
	}
	keys := make([]string, 10000)
	for i := range keys {
		keys[i] = fmt.Sprintf("user-%d", i)
	}
	for _, withClient := range []bool{false, true} {
		name := map[bool]string{false: "AddCall", true: "AddClientCall"}[withClient]
		b.Run(name, func(b *testing.B) {
			bt := NewBatch(model.SourceGateway)
			for i := 0; i < b.N; i++ {
				e := edges[i%len(edges)]
				at := now.Add(time.Duration(i%300) * time.Second)
				if withClient {
					bt.AddClientCall(e, at, 12.5, false, keys[(i*7919)%len(keys)])
				} else {
					bt.AddCall(e, at, 12.5, false)
				}
			}
		})
	}
}

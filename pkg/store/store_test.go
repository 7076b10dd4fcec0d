package store

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/livemap/servicemap/pkg/model"
)

var (
	ab = model.EdgeKey{Source: "a", Target: "b"}
	bc = model.EdgeKey{Source: "b", Target: "c"}
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newStore(now time.Time) (*Store, *clock) {
	c := &clock{now}
	return New(Options{Retention: 24 * time.Hour, FineWindow: time.Hour, Now: c.now}), c
}

func edgeByKey(edges []*model.Edge, k model.EdgeKey) *model.Edge {
	for _, e := range edges {
		if e.Key == k {
			return e
		}
	}
	return nil
}

func TestCountsExactlyAtMinuteAndHourResolution(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 30, 0, 0, time.UTC)
	s, _ := newStore(now)
	b := NewBatch(model.SourceTraces)
	// one call a minute for 24 hours, every 10th failing, latency = minute index % 100 + 1
	start := now.Add(-24 * time.Hour).Add(time.Minute)
	for i := 0; i < 24*60-1; i++ {
		b.AddCall(ab, start.Add(time.Duration(i)*time.Minute+7*time.Second), float64(i%100+1), i%10 == 0)
	}
	s.Apply(b)
	s.Maintain()

	cases := []struct {
		name     string
		from, to time.Time
		calls    uint64
	}{
		{"whole day", now.Add(-24 * time.Hour), now, 24*60 - 1},
		{"last 30 minutes (minute buckets)", now.Add(-30 * time.Minute), now, 30},
		{"ten minutes inside the fine window", now.Add(-50 * time.Minute), now.Add(-40 * time.Minute), 10},
		{"an old whole hour (hour buckets)", time.Date(2026, 11, 23, 1, 0, 0, 0, time.UTC), time.Date(2026, 11, 23, 2, 0, 0, 0, time.UTC), 60},
		{"empty range before the data", now.Add(-48 * time.Hour), now.Add(-25 * time.Hour), 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			edges, _ := s.Snapshot(tc.from, tc.to, model.AllSources)
			e := edgeByKey(edges, ab)
			var got uint64
			if e != nil {
				got = e.Stats.Calls
			}
			if got != tc.calls {
				t.Fatalf("calls = %d, want %d", got, tc.calls)
			}
			if e != nil && e.Stats.Latency.Count() != tc.calls {
				t.Errorf("latency count %d, want %d", e.Stats.Latency.Count(), tc.calls)
			}
		})
	}
	edges, _ := s.Snapshot(now.Add(-24*time.Hour), now, model.AllSources)
	e := edgeByKey(edges, ab)
	if e.Stats.Errors != 144 { // i%10==0 for i in [0, 1439)
		t.Errorf("errors %d, want 144", e.Stats.Errors)
	}
	if p99 := e.Stats.P99Ms(); math.Abs(p99-99)/99 > 0.01 {
		t.Errorf("p99 %v, want 99 within 1%%", p99)
	}
	if want := now.Add(-time.Minute + 7*time.Second); !e.LastSeen.Equal(want) {
		t.Errorf("last seen %v, want %v", e.LastSeen, want)
	}
}

func TestLateDataAfterPackingIsCounted(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 30, 0, 0, time.UTC)
	s, clk := newStore(now)
	b := NewBatch(model.SourceTraces)
	b.AddCall(ab, now.Add(-10*time.Minute), 5, false)
	s.Apply(b)
	b = NewBatch(model.SourceTraces)
	b.AddCall(ab, now.Add(-time.Minute), 5, false) // a newer bucket packs the older one
	s.Apply(b)
	clk.t = now.Add(5 * time.Minute)
	s.Maintain()
	late := NewBatch(model.SourceTraces)
	late.AddCall(ab, now.Add(-10*time.Minute+30*time.Second), 500, true)
	s.Apply(late)
	edges, _ := s.Snapshot(now.Add(-11*time.Minute), now.Add(-9*time.Minute), model.AllSources)
	e := edgeByKey(edges, ab)
	if e == nil || e.Stats.Calls != 2 || e.Stats.Errors != 1 || e.Stats.Latency.Count() != 2 {
		t.Fatalf("late data lost: %+v", e)
	}
}

func TestRetentionDropsOldBuckets(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 30, 0, 0, time.UTC)
	s, clk := newStore(now)
	b := NewBatch(model.SourceTraces)
	b.AddCall(ab, now.Add(-23*time.Hour), 5, false)
	b.AddCall(bc, now.Add(-25*time.Hour), 5, false) // already beyond retention
	s.Apply(b)
	if s.Size().Series != 1 {
		t.Fatalf("series %d, want 1 (b->c was beyond retention)", s.Size().Series)
	}
	clk.t = now.Add(3 * time.Hour)
	s.Maintain()
	if sz := s.Size(); sz.Series != 0 || sz.CoarseBuckets != 0 {
		t.Fatalf("expired data kept: %+v", sz)
	}
}

func TestEvidenceIsJoinedNotSummed(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 30, 0, 0, time.UTC)
	s, _ := newStore(now)
	tr := NewBatch(model.SourceTraces)
	gw := NewBatch(model.SourceGateway)
	nw := NewBatch(model.SourceNetwork)
	for i := 0; i < 10; i++ {
		at := now.Add(-time.Duration(i+1) * time.Minute)
		tr.AddCall(ab, at, 10, false)
		gw.AddCall(ab, at, 12, i == 0)
	}
	gw.AddCall(bc, now.Add(-time.Minute), 3, false)
	nw.AddConnections(ab, now.Add(-time.Minute), 4)
	nw.AddConnections(bc, now.Add(-time.Minute), 2)
	for _, b := range []*Batch{tr, gw, nw} {
		s.Apply(b)
	}
	edges, _ := s.Snapshot(now.Add(-time.Hour), now, model.AllSources)
	e := edgeByKey(edges, ab)
	if e.Stats.Calls != 10 || e.Stats.Errors != 0 || e.Stats.Connections != 4 {
		t.Errorf("a->b stats %+v: want 10 calls from traces, 0 errors, 4 connections", e.Stats)
	}
	if e.Sources.String() != "traces,network,gateway" {
		t.Errorf("a->b sources %q", e.Sources)
	}
	if e2 := edgeByKey(edges, bc); e2.Stats.Calls != 1 || e2.Stats.Connections != 2 {
		t.Errorf("b->c stats %+v: want 1 call from gateway and 2 connections", e2.Stats)
	}
	onlyGateway, _ := s.Snapshot(now.Add(-time.Hour), now, model.SourceGateway)
	if e := edgeByKey(onlyGateway, ab); e.Stats.Calls != 10 || e.Stats.Errors != 1 || e.Sources != model.SourceGateway {
		t.Errorf("gateway-only view of a->b: %+v %v", e.Stats, e.Sources)
	}
}

func TestStatusNoticeNamesSourceAndTime(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 30, 0, 0, time.UTC)
	s, _ := newStore(now)
	s.ReportSuccess(model.SourceTraces, now.Add(-time.Minute), "ok")
	s.ReportFailure(model.SourceTraces, now, errors.New("connection refused"))
	s.ReportFailure(model.SourceTraces, now.Add(time.Minute), errors.New("connection refused again"))
	sts := s.Statuses()
	if len(sts) != 1 || !sts[0].Stale() {
		t.Fatalf("statuses %+v", sts)
	}
	n := sts[0].Notice()
	for _, want := range []string{"traces source is stale since 2026-11-23T12:30:00Z", "before 2026-11-23T12:29:00Z", "connection refused again"} {
		if !strings.Contains(n, want) {
			t.Errorf("notice %q lacks %q", n, want)
		}
	}
}

func TestWindowsPartitionTheRange(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 30, 0, 0, time.UTC)
	s, _ := newStore(now)
	b := NewBatch(model.SourceTraces)
	for i := 0; i < 30; i++ { // one call a minute over the last 30 minutes, errors in the last 10
		b.AddCall(ab, now.Add(-time.Duration(30-i)*time.Minute+time.Second), 5, i >= 20)
	}
	s.Apply(b)
	starts, edges := s.Windows(now.Add(-30*time.Minute), now, 10*time.Minute, model.AllSources)
	if len(starts) != 3 || !starts[0].Equal(now.Add(-30*time.Minute)) {
		t.Fatalf("starts %v", starts)
	}
	row := edges[ab]
	var total uint64
	for i, e := range row {
		if e == nil || e.Stats.Calls != 10 {
			t.Fatalf("window %d: %+v, want 10 calls", i, e)
		}
		total += e.Stats.Calls
	}
	if row[0].Stats.Errors != 0 || row[2].Stats.Errors != 10 {
		t.Errorf("errors per window: %d %d %d", row[0].Stats.Errors, row[1].Stats.Errors, row[2].Stats.Errors)
	}
	if total != 30 {
		t.Errorf("total %d, want 30", total)
	}
}

// TestEdgeInfoThroughBatches: edge info keeps EdgeInfo.Merge's rules whether
// it arrives in one batch or several, repeated or not, and info alone (no
// call) names no series.
func TestEdgeInfoThroughBatches(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 30, 0, 0, time.UTC)
	s, _ := newStore(now)
	deploy := now.Add(-time.Hour)
	b := NewBatchSize(model.SourceTraces, 4)
	b.AddCall(ab, now.Add(-time.Minute), 5, false)
	b.AddEdgeInfo(ab, model.EdgeInfo{Protocol: "TCP"})
	b.AddEdgeInfo(ab, model.EdgeInfo{Protocol: "gRPC"}) // a learned protocol beats TCP
	b.AddEdgeInfo(ab, model.EdgeInfo{Protocol: "HTTP"}) // and is then kept
	b.AddEdgeInfo(bc, model.EdgeInfo{OwnerTeam: "payments", LastDeploy: deploy})
	s.Apply(b)
	b.Reset()
	b.AddEdgeInfo(bc, model.EdgeInfo{Protocol: "kafka", LastDeploy: deploy.Add(-time.Minute)}) // an older deploy changes nothing
	b.AddEdgeInfo(bc, model.EdgeInfo{Tier: "1"})
	b.AddEdgeInfo(bc, model.EdgeInfo{Tier: "1"})
	s.Apply(b)
	if b.Len() != 0 {
		t.Fatalf("batch after Reset and info only: %d cells, want 0", b.Len())
	}
	want := map[model.EdgeKey]model.EdgeInfo{
		ab: {Protocol: "gRPC"},
		bc: {Protocol: "kafka", OwnerTeam: "payments", Tier: "1", LastDeploy: deploy},
	}
	for k, w := range want {
		if got := s.infos[k]; got != w {
			t.Fatalf("info of %v = %+v, want %+v", k, got, w)
		}
	}
	if len(s.series) != 1 || s.series[seriesKey{ab, model.SourceTraces}] == nil {
		t.Fatalf("series %v, want only a->b (info alone names no series)", s.series)
	}
	snap, _ := s.Snapshot(now.Add(-time.Hour), now, model.AllSources)
	if len(snap) != 1 || snap[0].Key != ab || snap[0].Info.Protocol != "gRPC" || snap[0].Stats.Calls != 1 {
		t.Fatalf("snapshot %+v, want a->b with 1 call over gRPC", snap)
	}
}

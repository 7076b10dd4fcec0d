// Package store is the plugin's cache: the traffic of every edge, per source,
// in time buckets, plus what the sources know of nodes and edges. Sources
// write batches into it; queries read range snapshots from it and never wait
// on a source.
package store

import (
	"maps"
	"runtime"
	"sync"
	"time"

	"github.com/axiomhq/hyperloglog"

	"github.com/livemap/servicemap/pkg/model"
)

// Options size the cache.
type Options struct {
	Retention  time.Duration // how long hour buckets are kept (default 24 h)
	FineWindow time.Duration // how long minute buckets are kept (default 1 h)
	Now        func() time.Time
}

// Store is safe for concurrent use.
type Store struct {
	mu       sync.RWMutex
	opts     Options
	series   map[seriesKey]*series
	nodes    map[string]model.NodeInfo
	infos    map[model.EdgeKey]model.EdgeInfo
	statuses map[model.Source]*SourceStatus
}

type seriesKey struct {
	edge   model.EdgeKey
	source model.Source
}

// New makes an empty store.
func New(opts Options) *Store {
	if opts.Retention <= 0 {
		opts.Retention = 24 * time.Hour
	}
	if opts.FineWindow <= 0 {
		opts.FineWindow = time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Store{
		opts:     opts,
		series:   map[seriesKey]*series{},
		nodes:    map[string]model.NodeInfo{},
		infos:    map[model.EdgeKey]model.EdgeInfo{},
		statuses: map[model.Source]*SourceStatus{},
	}
}

// Retention is how far back the store answers.
func (s *Store) Retention() time.Duration { return s.opts.Retention }

// cutoffs are the starts of the oldest minute and hour buckets kept.
func (s *Store) cutoffs(now time.Time) (fineFrom, coarseFrom int64) {
	f := now.Add(-s.opts.FineWindow).Unix()
	c := now.Add(-s.opts.Retention).Unix()
	return f - mod(f, coarseWidth), c - mod(c, coarseWidth)
}

// Apply adds a batch. Events older than the retention are dropped (they could
// never be queried); everything else is counted exactly once.
func (s *Store) Apply(b *Batch) {
	now := s.opts.Now()
	fineFrom, coarseFrom := s.cutoffs(now)
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range b.list {
		e := &b.list[i]
		if e.hasInfo {
			cur, ok := s.infos[e.key]
			if cur.Merge(e.info) || !ok {
				s.infos[e.key] = cur
			}
		}
		var ser *series
		for j := range e.minutes {
			c := &e.minutes[j]
			if c.minute < coarseFrom {
				continue
			}
			if ser == nil {
				key := seriesKey{e.key, b.source}
				if ser = s.series[key]; ser == nil {
					ser = &series{}
					s.series[key] = ser
				}
			}
			ser.add(c.minute, c, fineFrom)
		}
	}
	for _, n := range b.nodes {
		cur := s.nodes[n.ID]
		cur.Merge(n)
		s.nodes[n.ID] = cur
	}
}

// Maintain drops expired buckets and packs closed ones; call it periodically.
func (s *Store) Maintain() {
	now := s.opts.Now()
	fineFrom, coarseFrom := s.cutoffs(now)
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, ser := range s.series {
		if ser.trim(fineFrom, coarseFrom, now.Unix()) {
			delete(s.series, k)
		}
	}
}

// SetNode replaces what is known of a node (used by sources that own the
// whole description, such as Kubernetes).
func (s *Store) SetNode(info model.NodeInfo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nodes[info.ID] = info
}

// Snapshot returns the edges with traffic in [from, to) seen by any of the
// given sources, and what is known of nodes.
//
// Evidence is joined, not summed: when several sources count calls on one
// edge, the calls, errors and latencies come from the first of traces,
// gateway that has calls in the range; connections come from the network
// source. Sources is the set of every source that saw the edge.
func (s *Store) Snapshot(from, to time.Time, sources model.Source) ([]*model.Edge, map[string]model.NodeInfo) {
	fineFrom, _ := s.cutoffs(s.opts.Now())
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.joined(unixFrom(from), unixTo(to), fineFrom, sources), maps.Clone(s.nodes)
}

// Windows returns each edge's stats in consecutive windows [from+i*step,
// from+(i+1)*step) covering [from, to). from is rounded down to the minute and
// step up to whole minutes, so minute buckets fall into exactly one window.
func (s *Store) Windows(from, to time.Time, step time.Duration, sources model.Source) (starts []time.Time, edges map[model.EdgeKey][]*model.Edge) {
	stepSec := int64(max(step, time.Minute).Round(time.Minute) / time.Second)
	f := unixFrom(from)
	f -= mod(f, fineWidth)
	t := unixTo(to)
	fineFrom, _ := s.cutoffs(s.opts.Now())
	edges = map[model.EdgeKey][]*model.Edge{}
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := int((t - f + stepSec - 1) / stepSec)
	for i := 0; i < n; i++ {
		ws := f + int64(i)*stepSec
		starts = append(starts, time.Unix(ws, 0).UTC())
		for _, e := range s.joined(ws, min(ws+stepSec, t), fineFrom, sources) {
			row := edges[e.Key]
			if row == nil {
				row = make([]*model.Edge, n)
				edges[e.Key] = row
			}
			row[i] = e
		}
	}
	return starts, edges
}

func unixFrom(t time.Time) int64 { return t.Unix() }

// unixTo keeps events inside to's last second: [from, to) in whole seconds.
func unixTo(t time.Time) int64 {
	if t.Nanosecond() > 0 {
		return t.Unix() + 1
	}
	return t.Unix()
}

// joined collects, under the read lock, every edge with evidence in [f, t).
// The working set and the edges are allocated once per call, not per series.
func (s *Store) joined(f, t, fineFrom int64, sources model.Source) []*model.Edge {
	type parts struct {
		key         model.EdgeKey
		bySource    [3]model.Stats
		first, last int64
		seen        model.Source
	}
	ranges := s.rangeAll(f, t, fineFrom, sources)
	index := make(map[model.EdgeKey]int, len(ranges))
	found := make([]parts, 0, len(ranges))
	for ri := range ranges {
		k, ser, st, last := ranges[ri].key, ranges[ri].ser, &ranges[ri].stats, ranges[ri].last
		if last == 0 && st.Calls == 0 && st.Connections == 0 {
			continue
		}
		i, ok := index[k.edge]
		if !ok {
			i = len(found)
			index[k.edge] = i
			found = append(found, parts{key: k.edge})
		}
		p := &found[i]
		p.bySource[sourceSlot(k.source)] = *st
		p.seen |= k.source
		p.last = max(p.last, last)
		if p.first == 0 || ser.first < p.first {
			p.first = ser.first
		}
	}
	edges := make([]model.Edge, len(found))
	out := make([]*model.Edge, len(found))
	for i := range found {
		p := &found[i]
		e := &edges[i]
		*e = model.Edge{Key: p.key, Sources: p.seen, Info: s.infos[p.key], FirstSeen: time.Unix(p.first, 0).UTC(), LastSeen: time.Unix(p.last, 0).UTC()}
		for _, slot := range []int{0, 2} { // traces, then gateway
			if st := &p.bySource[slot]; st.Calls > 0 {
				e.Stats = *st
				break
			}
		}
		if p.seen&model.SourceNetwork != 0 {
			e.Stats.Connections = p.bySource[sourceSlot(model.SourceNetwork)].Connections
		}
		if e.Info.Protocol == "" && p.seen == model.SourceNetwork {
			e.Info.Protocol = "TCP"
		}
		out[i] = e
	}
	return out
}

// parallelMinSeries is how many series each extra core must get before a
// range query is split over cores (below that, starting goroutines costs
// more than it saves).
const parallelMinSeries = 512

// ranged is one series' traffic in a query range.
type ranged struct {
	key   seriesKey
	ser   *series
	stats model.Stats
	last  int64
}

// rangeAll computes the traffic in [f, t) of every series of the given
// sources, split over the cores for a large store. The caller holds the read
// lock; range reads only write their own result.
func (s *Store) rangeAll(f, t, fineFrom int64, sources model.Source) []ranged {
	rs := make([]ranged, 0, len(s.series))
	for k, ser := range s.series {
		if k.source&sources != 0 {
			rs = append(rs, ranged{key: k, ser: ser})
		}
	}
	work := func(part []ranged) {
		for i := range part {
			part[i].last = part[i].ser.rangeStats(f, t, fineFrom, &part[i].stats)
		}
	}
	workers := min(runtime.GOMAXPROCS(0), len(rs)/parallelMinSeries)
	if workers <= 1 {
		work(rs)
		return rs
	}
	var wg sync.WaitGroup
	chunk := (len(rs) + workers - 1) / workers
	for lo := 0; lo < len(rs); lo += chunk {
		part := rs[lo:min(lo+chunk, len(rs))]
		wg.Add(1)
		go func() {
			defer wg.Done()
			work(part)
		}()
	}
	wg.Wait()
	return rs
}

func sourceSlot(src model.Source) int {
	switch src {
	case model.SourceTraces:
		return 0
	case model.SourceNetwork:
		return 1
	default:
		return 2
	}
}

// Nodes lists what is known of every node (for pickers).
func (s *Store) Nodes() map[string]model.NodeInfo {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := maps.Clone(s.nodes)
	for k := range s.series {
		for _, id := range []string{k.edge.Source, k.edge.Target} {
			if _, ok := out[id]; !ok {
				out[id] = model.NodeInfo{ID: id, Kind: model.KindService}
			}
		}
	}
	return out
}

// Stats reports the size of the cache.
type Stats struct {
	Series, FineBuckets, CoarseBuckets int
	HistogramBytes                     int
	ClientSketches                     int // buckets holding a client HyperLogLog (gateway series)
}

// Size counts series and buckets.
func (s *Store) Size() Stats {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var st Stats
	st.Series = len(s.series)
	for _, ser := range s.series {
		st.FineBuckets += len(ser.fine)
		st.CoarseBuckets += len(ser.coarse)
		st.HistogramBytes += ser.hours.SizeBytes()
		for _, bs := range [][]bucket{ser.fine, ser.coarse} {
			for i := range bs {
				st.HistogramBytes += bs[i].stats.Latency.SizeBytes()
				if bs[i].clients != nil {
					st.ClientSketches++
				}
			}
		}
	}
	return st
}

// EntryClients returns, for every entry service (the target of a gateway
// edge) with client keys in [from, to), the HyperLogLog of the distinct
// clients that called it, merged over the range and over its callers —
// merged, never summed: one client seen in many minutes or through several
// callers counts once. The sketches are the caller's to keep.
func (s *Store) EntryClients(from, to time.Time) map[string]*hyperloglog.Sketch {
	fineFrom, _ := s.cutoffs(s.opts.Now())
	f, t := unixFrom(from), unixTo(to)
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := map[string]*hyperloglog.Sketch{}
	for k, ser := range s.series {
		if k.source != model.SourceGateway {
			continue
		}
		ser.visit(f, t, fineFrom, func(b *bucket, _ int) {
			if b.clients == nil {
				return
			}
			cur := out[k.edge.Target]
			if cur == nil {
				out[k.edge.Target] = b.clients.Clone()
				return
			}
			_ = cur.Merge(b.clients) // one precision everywhere: cannot fail
		})
	}
	return out
}

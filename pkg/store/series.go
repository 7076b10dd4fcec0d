package store

import (
	"slices"

	"github.com/axiomhq/hyperloglog"

	"github.com/livemap/servicemap/pkg/model"
	"github.com/livemap/servicemap/pkg/sketch"
)

const (
	fineWidth   = 60   // seconds: minute buckets for the recent past
	coarseWidth = 3600 // seconds: hour buckets for the whole retention
)

// bucket holds one series' traffic in [start, start+width).
type bucket struct {
	start int64 // unix seconds
	last  int64 // unix seconds of the latest event in it
	stats model.Stats
	// clients is the HyperLogLog of distinct client keys; only gateway
	// series have one, every other bucket pays one nil pointer.
	clients *hyperloglog.Sketch
}

// series is the traffic of one edge as seen by one source. Every event goes
// into a minute bucket (while recent enough to be kept) and into its hour
// bucket, so a query can take a whole hour in one merge.
type series struct {
	first, last int64 // unix seconds of the first and latest event
	fine        []bucket
	coarse      []bucket
	// hours is the merge of every coarse bucket's histogram, kept up to date
	// on every write and expiry. A query over most of the retention takes it
	// and subtracts the few hours it leaves out, instead of merging up to 24
	// hour histograms per series (integer counts: the result is exact).
	hours sketch.Latency
}

// find returns the bucket starting at start, inserting it in order when
// missing. A bucket that is no longer the newest is packed: late data unpacks
// it again, so packing never loses anything.
func find(buckets *[]bucket, start int64) *bucket {
	bs := *buckets
	n := len(bs)
	if n > 0 && bs[n-1].start == start {
		return &bs[n-1]
	}
	if n == 0 || bs[n-1].start < start {
		if n > 0 {
			bs[n-1].stats.Latency.Pack()
		}
		*buckets = append(bs, bucket{start: start})
		return &(*buckets)[n]
	}
	i, found := slices.BinarySearchFunc(bs, start, func(b bucket, s int64) int { return cmp64(b.start, s) })
	if !found {
		*buckets = slices.Insert(bs, i, bucket{start: start})
	}
	return &(*buckets)[i]
}

func cmp64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (s *series) add(minute int64, c *cell, fineFrom int64) {
	if s.first == 0 || minute < s.first {
		s.first = minute
	}
	if c.last > s.last {
		s.last = c.last
	}
	if minute >= fineFrom {
		addTo(find(&s.fine, minute), c)
	}
	hour := find(&s.coarse, minute-mod(minute, coarseWidth))
	hour.stats.Latency.ReserveLike(&s.hours) // a new hour: room for the series' usual latencies at once
	addTo(hour, c)
	c.addLatency(&s.hours)
}

// addTo adds a cell to a minute or hour bucket. Client sketches are merged
// (the hour bucket's is the union of its minutes'), never summed.
func addTo(b *bucket, c *cell) {
	c.addTo(&b.stats)
	if c.last > b.last {
		b.last = c.last
	}
	if c.clients != nil {
		if b.clients == nil {
			b.clients = c.clients.Clone()
		} else {
			_ = b.clients.Merge(c.clients) // both precision 14: merging cannot fail
		}
	}
}

// trim drops buckets that start before the cut-offs and packs closed ones.
// It reports whether the series is now empty.
func (s *series) trim(fineFrom, coarseFrom, now int64) bool {
	s.fine = dropBefore(s.fine, fineFrom)
	for i := 0; i < len(s.coarse) && s.coarse[i].start < coarseFrom; i++ {
		s.hours.Sub(&s.coarse[i].stats.Latency)
	}
	s.coarse = dropBefore(s.coarse, coarseFrom)
	s.hours.Trim() // empty bins: growth's headroom, expired hours' extremes
	for i := range s.fine {
		if s.fine[i].start+fineWidth < now {
			s.fine[i].stats.Latency.Pack()
		}
	}
	for i := range s.coarse {
		if s.coarse[i].start+coarseWidth < now {
			s.coarse[i].stats.Latency.Pack()
		}
	}
	if len(s.coarse) > 0 && s.first < s.coarse[0].start {
		s.first = s.coarse[0].start
	}
	return len(s.coarse) == 0 && len(s.fine) == 0
}

func dropBefore(bs []bucket, from int64) []bucket {
	i := 0
	for i < len(bs) && bs[i].start < from {
		i++
	}
	if i == 0 {
		return bs
	}
	// copy down so the dropped buckets' histograms can be collected
	n := copy(bs, bs[i:])
	clear(bs[n:])
	return bs[:n]
}

// rangeStats adds the traffic in [from, to) to out and returns the latest
// event time in it (0 if none). Counters are added bucket by bucket in visit
// order (so the float latency sum is the same to the last bit whichever way
// the histograms are merged); the histograms of consecutive whole hours are
// merged as one run by mergeHours.
func (s *series) rangeStats(from, to, fineFrom int64, out *model.Stats) (last int64) {
	runFrom, runTo := 0, 0 // coarse indexes of the pending run of whole hours
	last = s.visit(from, to, fineFrom, func(b *bucket, hour int) {
		out.AddCounts(&b.stats)
		switch {
		case hour < 0:
			out.Latency.Merge(&b.stats.Latency)
		case hour == runTo:
			runTo++
		default:
			s.mergeHours(runFrom, runTo, &out.Latency)
			runFrom, runTo = hour, hour+1
		}
	})
	s.mergeHours(runFrom, runTo, &out.Latency)
	return last
}

// mergeHours merges the histograms of the hour buckets coarse[i:j] into dst:
// one by one for a short run, or as the running total minus the hours
// outside the run when that takes fewer merges (a 24 h query: one).
func (s *series) mergeHours(i, j int, dst *sketch.Latency) {
	inside, outside := j-i, len(s.coarse)-(j-i)
	if inside <= 1+outside {
		for k := i; k < j; k++ {
			dst.Merge(&s.coarse[k].stats.Latency)
		}
		return
	}
	dst.Merge(&s.hours)
	for k := range s.coarse {
		if k < i || k >= j {
			dst.Sub(&s.coarse[k].stats.Latency)
		}
	}
}

// visit calls use for every bucket that makes up [from, to), in time order,
// and returns the latest event time in the range (0 if none). hour is the
// bucket's index in coarse when it is a whole hour bucket, -1 for a minute
// bucket.
//
// Resolution: minute buckets where they are still kept (the fine window),
// hour buckets before that. A bucket counts when it overlaps the range. An
// hour entirely inside the range, or whose data all lies inside it, is taken
// from its hour bucket in one merge — the sum of its minute buckets.
func (s *series) visit(from, to, fineFrom int64, use func(b *bucket, hour int)) (last int64) {
	if s.last < from-coarseWidth || s.first >= to {
		return 0
	}
	fromMinute := from - mod(from, fineWidth)
	ci := 0
	for ci < len(s.coarse) && s.coarse[ci].start+coarseWidth <= from {
		ci++
	}
	fi := 0
	for ; ci < len(s.coarse) && s.coarse[ci].start < to; ci++ {
		h := &s.coarse[ci]
		wholeHour := h.start+coarseWidth <= fineFrom || // before the fine window: hours only
			(fromMinute <= h.start && (h.start+coarseWidth-fineWidth < to || h.last < to))
		if wholeHour {
			use(h, ci)
			if h.last < to {
				last = max(last, h.last)
			} else {
				last = max(last, to-1)
			}
			continue
		}
		for fi < len(s.fine) && s.fine[fi].start < h.start {
			fi++
		}
		for ; fi < len(s.fine) && s.fine[fi].start < h.start+coarseWidth; fi++ {
			m := &s.fine[fi]
			if m.start < to && m.start+fineWidth > from {
				use(m, -1)
				last = max(last, min(m.last, to-1))
			}
		}
	}
	return last
}

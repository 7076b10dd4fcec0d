// Package sketch holds the mergeable latency histogram kept per edge and time
// bucket.
//
// It uses DDSketch's logarithmic index mapping (github.com/DataDog/sketches-go)
// at 1 % relative accuracy, so any quantile read from it is within 1 % of the
// true value of some sample at that rank. The store is our own: sketches-go's
// dense store keeps float64 counts in 128-bin chunks (about 1 KiB minimum per
// sketch, see docs/BENCHMARKS.md), which is too much for 5,000 edges × 1,440
// minute buckets. Ours is dense over the bins actually used and, once a bucket
// is closed, packs its counts into 1, 2, 4 or 8 bytes each, whichever fits the
// largest count.
package sketch

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/DataDog/sketches-go/ddsketch/mapping"
)

// RelativeAccuracy is the guaranteed relative error of a quantile.
const RelativeAccuracy = 0.01

// Values outside [MinMs, MaxMs] are clamped: a latency under a microsecond is
// reported as one microsecond, one over ~2.7 hours as that.
const (
	MinMs = 0.001
	MaxMs = 1e7
)

var indexMapping = mustMapping()

// minIndex and maxIndex bound the bins a latency can land in.
var minIndex, maxIndex = Index(MinMs), Index(MaxMs)

func mustMapping() *mapping.LogarithmicMapping {
	m, err := mapping.NewLogarithmicMapping(RelativeAccuracy)
	if err != nil {
		panic(err) // a constant argument: cannot fail at run time
	}
	return m
}

// Latency is a histogram of latencies in milliseconds. The zero value is an
// empty histogram ready to use. It is not safe for concurrent use.
type Latency struct {
	offset int32    // index of the first bin
	counts []uint64 // mutable form; nil when packed or empty
	packed []byte   // packed form: len(packed)/width bins of width bytes
	width  uint8
	n      uint64
}

// Index returns the bin index for a latency in milliseconds.
func Index(ms float64) int32 {
	if !(ms >= MinMs) { // also catches NaN
		ms = MinMs
	}
	if ms > MaxMs {
		ms = MaxMs
	}
	return int32(indexMapping.Index(ms))
}

// Add records one latency.
func (l *Latency) Add(ms float64) { l.AddN(ms, 1) }

// AddN records the same latency n times.
func (l *Latency) AddN(ms float64, n uint64) {
	if n == 0 {
		return
	}
	l.addIndex(Index(ms), n)
}

// AddIndex records n latencies whose bin Index returned: a caller that
// holds one latency for several histograms maps it to its bin once.
func (l *Latency) AddIndex(idx int32, n uint64) {
	if n == 0 {
		return
	}
	l.addIndex(min(max(idx, minIndex), maxIndex), n)
}

func (l *Latency) addIndex(idx int32, n uint64) {
	l.unpack()
	l.grow(idx, idx)
	l.counts[idx-l.offset] += n
	l.n += n
}

// Count is the number of recorded latencies.
func (l *Latency) Count() uint64 { return l.n }

// minGrowPad is the least headroom a growing histogram takes (16 bins: 17 %
// of latency range at 1 % accuracy, 128 bytes).
const minGrowPad = 16

// grow makes the mutable bins cover [lo, hi].
func (l *Latency) grow(lo, hi int32) {
	if l.counts == nil {
		l.offset = lo
		l.counts = make([]uint64, hi-lo+1, hi-lo+1+8)
		return
	}
	end := l.offset + int32(len(l.counts)) - 1
	if lo >= l.offset && hi <= end {
		return
	}
	newLo, newHi := min(lo, l.offset), max(hi, end)
	// Headroom on the side that grew: a run of merges whose extents drift
	// (a node summing its inbound edges) re-allocates a couple of times, not
	// once per merge. Empty bins change nothing: Quantile passes over them
	// and Pack trims them.
	// At least minGrowPad bins: a sparse histogram (a backfill's hour of one
	// call a minute) otherwise re-allocates for nearly every new bin.
	pad := max(int32(len(l.counts)/4), minGrowPad)
	if newLo < l.offset {
		newLo = max(newLo-pad, minIndex)
	}
	if newHi > end {
		newHi = min(newHi+pad, maxIndex)
	}
	grown := make([]uint64, newHi-newLo+1, newHi-newLo+1+8)
	copy(grown[l.offset-newLo:], l.counts)
	l.offset, l.counts = newLo, grown
}

// ReserveLike gives an empty histogram room for the bins like spans, so
// adding latencies one at a time in that range never re-allocates (a new
// hour bucket reserving its series' usual extent). It changes no count.
func (l *Latency) ReserveLike(like *Latency) {
	if l.counts != nil || l.width != 0 || like.n == 0 {
		return
	}
	lo, hi := like.offset, like.offset+int32(like.bins())-1
	if like.counts != nil {
		u, v := used(like.counts)
		lo, hi = like.offset+int32(u), like.offset+int32(v)
	}
	l.grow(lo, hi)
}

// Merge adds every latency of other into l.
func (l *Latency) Merge(other *Latency) {
	if other == nil || other.n == 0 {
		return
	}
	l.unpack()
	if l.counts == nil && other.counts != nil { // into an empty histogram: a copy of the used bins
		lo, hi := used(other.counts)
		l.offset, l.n = other.offset+int32(lo), other.n
		l.counts = make([]uint64, hi-lo+1, hi-lo+1+8)
		copy(l.counts, other.counts[lo:hi+1])
		return
	}
	lo := other.offset
	hi := lo + int32(other.bins()) - 1
	l.grow(lo, hi)
	dst := l.counts[lo-l.offset:]
	if other.counts != nil {
		for i, c := range other.counts {
			dst[i] += c
		}
	} else {
		mergePacked(dst, other.packed, other.width)
	}
	l.n += other.n
}

// Sub removes every latency of other from l. other must be part of what was
// merged into l (the store keeps a running total of its hour buckets and
// takes an hour back out when it expires or a query leaves it out); counts
// are integers, so l is then exactly the merge of the rest.
func (l *Latency) Sub(other *Latency) {
	if other == nil || other.n == 0 {
		return
	}
	l.unpack()
	lo := other.offset
	hi := lo + int32(other.bins()) - 1
	l.grow(lo, hi) // a no-op when the precondition holds
	dst := l.counts[lo-l.offset:]
	for i := range other.bins() {
		dst[i] -= other.at(i)
	}
	l.n -= other.n
}

func mergePacked(dst []uint64, packed []byte, width uint8) {
	switch width {
	case 1:
		for i, c := range packed {
			dst[i] += uint64(c)
		}
	case 2:
		for i := range len(packed) / 2 {
			dst[i] += uint64(binary.LittleEndian.Uint16(packed[2*i:]))
		}
	case 4:
		for i := range len(packed) / 4 {
			dst[i] += uint64(binary.LittleEndian.Uint32(packed[4*i:]))
		}
	default:
		for i := range len(packed) / 8 {
			dst[i] += binary.LittleEndian.Uint64(packed[8*i:])
		}
	}
}

func (l *Latency) bins() int {
	if l.counts != nil {
		return len(l.counts)
	}
	if l.width == 0 {
		return 0
	}
	return len(l.packed) / int(l.width)
}

// Quantile returns the latency at quantile q (0..1) in milliseconds, or NaN
// for an empty histogram.
func (l *Latency) Quantile(q float64) float64 {
	if l.n == 0 || q < 0 || q > 1 || math.IsNaN(q) {
		return math.NaN()
	}
	rank := q * float64(l.n-1)
	// for a whole count, cum > rank exactly when cum > floor(rank)
	floor := uint64(rank)
	var cum uint64
	if l.counts != nil && q > 0.5 {
		// high quantiles (p99 on every edge of a map) from the top: the
		// smallest bin whose cumulative count exceeds rank, found by taking
		// bins off the full count — the same integer comparisons as below.
		cum = l.n
		i := len(l.counts) - 1
		for i > 0 && cum-l.counts[i] > floor {
			cum -= l.counts[i]
			i--
		}
		return indexMapping.Value(int(l.offset) + i)
	}
	if l.counts != nil { // the mutable form (merged query results): no per-bin width switch
		for i, c := range l.counts {
			cum += c
			if cum > floor {
				return indexMapping.Value(int(l.offset) + i)
			}
		}
	} else {
		for i := range l.bins() {
			cum += l.at(i)
			if cum > floor {
				return indexMapping.Value(int(l.offset) + i)
			}
		}
	}
	return indexMapping.Value(int(l.offset) + l.bins() - 1)
}

func (l *Latency) at(i int) uint64 {
	if l.counts != nil {
		return l.counts[i]
	}
	switch l.width {
	case 1:
		return uint64(l.packed[i])
	case 2:
		return uint64(binary.LittleEndian.Uint16(l.packed[2*i:]))
	case 4:
		return uint64(binary.LittleEndian.Uint32(l.packed[4*i:]))
	default:
		return binary.LittleEndian.Uint64(l.packed[8*i:])
	}
}

// used returns the first and last non-empty bin (lo > hi when all are empty).
func used(counts []uint64) (lo, hi int) {
	lo, hi = 0, len(counts)-1
	for lo <= hi && counts[lo] == 0 {
		lo++
	}
	for hi >= lo && counts[hi] == 0 {
		hi--
	}
	return lo, hi
}

// Trim drops the empty bins at both ends of a mutable histogram (the
// headroom growing leaves), keeping it mutable; for a long-lived running
// total. A packed histogram is already trimmed.
func (l *Latency) Trim() {
	if l.counts == nil {
		return
	}
	lo, hi := used(l.counts)
	switch {
	case lo > hi:
		*l = Latency{}
	case lo > 0 || hi < len(l.counts)-1 || cap(l.counts) > len(l.counts)+8:
		counts := make([]uint64, hi-lo+1, hi-lo+1+8)
		copy(counts, l.counts[lo:hi+1])
		l.offset += int32(lo)
		l.counts = counts
	}
}

// Pack turns the histogram into its compact read-mostly form. Adding to a
// packed histogram unpacks it again, so late data is never lost.
func (l *Latency) Pack() {
	if l.counts == nil {
		return
	}
	// trim empty bins at both ends (growth's headroom, merges)
	lo, hi := used(l.counts)
	if lo > hi {
		*l = Latency{}
		return
	}
	counts := l.counts[lo : hi+1]
	var largest uint64
	for _, c := range counts {
		largest = max(largest, c)
	}
	width := uint8(8)
	switch {
	case largest <= math.MaxUint8:
		width = 1
	case largest <= math.MaxUint16:
		width = 2
	case largest <= math.MaxUint32:
		width = 4
	}
	packed := make([]byte, len(counts)*int(width))
	for i, c := range counts {
		switch width {
		case 1:
			packed[i] = byte(c)
		case 2:
			binary.LittleEndian.PutUint16(packed[2*i:], uint16(c))
		case 4:
			binary.LittleEndian.PutUint32(packed[4*i:], uint32(c))
		default:
			binary.LittleEndian.PutUint64(packed[8*i:], c)
		}
	}
	l.offset += int32(lo)
	l.counts, l.packed, l.width = nil, packed, width
}

func (l *Latency) unpack() {
	if l.counts != nil || l.width == 0 {
		return
	}
	bins := l.bins()
	counts := make([]uint64, bins, bins+8)
	mergePacked(counts, l.packed, l.width)
	l.counts, l.packed, l.width = counts, nil, 0
}

// Reset empties the histogram.
func (l *Latency) Reset() { *l = Latency{} }

// SizeBytes approximates the heap held by the histogram.
func (l *Latency) SizeBytes() int {
	return 40 + cap(l.counts)*8 + cap(l.packed)
}

// Clone returns an independent copy.
func (l *Latency) Clone() *Latency {
	c := &Latency{offset: l.offset, width: l.width, n: l.n}
	if l.counts != nil {
		c.counts = append([]uint64(nil), l.counts...)
	}
	if l.packed != nil {
		c.packed = append([]byte(nil), l.packed...)
	}
	return c
}

// String is for debugging.
func (l *Latency) String() string {
	return fmt.Sprintf("latency{n=%d bins=%d p50=%.3g p99=%.3g}", l.n, l.bins(), l.Quantile(0.5), l.Quantile(0.99))
}

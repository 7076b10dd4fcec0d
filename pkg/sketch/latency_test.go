package sketch

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

// exactQuantile uses the same rank rule as the sketch (lower rank q*(n-1)).
func exactQuantile(sorted []float64, q float64) float64 {
	return sorted[int(q*float64(len(sorted)-1))]
}

func lognormal(r *rand.Rand, n int, medianMs, sigma float64) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = medianMs * math.Exp(sigma*r.NormFloat64())
	}
	return v
}

func TestQuantilesWithinRelativeAccuracy(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		name   string
		values []float64
	}{
		{"lognormal", lognormal(r, 50_000, 20, 0.8)},
		{"bimodal", append(lognormal(r, 9_000, 3, 0.2), lognormal(r, 1_000, 900, 0.3)...)},
		{"tiny", []float64{0.5, 7, 120}},
		{"sub-microsecond clamps", []float64{0, 0.0001, 0.002}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var l Latency
			for _, v := range tc.values {
				l.Add(v)
			}
			sorted := append([]float64(nil), tc.values...)
			sort.Float64s(sorted)
			for _, q := range []float64{0, 0.5, 0.9, 0.99, 0.999, 1} {
				want := math.Max(exactQuantile(sorted, q), MinMs)
				got := l.Quantile(q)
				if rel := math.Abs(got-want) / want; rel > RelativeAccuracy+1e-9 {
					t.Errorf("q=%v: got %.6g want %.6g (relative error %.4f > %.2f)", q, got, want, rel, RelativeAccuracy)
				}
			}
			if l.Count() != uint64(len(tc.values)) {
				t.Errorf("count %d, want %d", l.Count(), len(tc.values))
			}
		})
	}
}

func TestMergeEqualsAddingEverything(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var all, a, b Latency
	for _, v := range lognormal(r, 5000, 10, 1) {
		all.Add(v)
		a.Add(v)
	}
	for _, v := range lognormal(r, 7000, 400, 0.5) {
		all.Add(v)
		b.Add(v)
	}
	b.Pack() // merging a packed histogram must give the same answer
	var merged Latency
	merged.Merge(&a)
	merged.Merge(&b)
	if merged.Count() != all.Count() {
		t.Fatalf("count %d, want %d", merged.Count(), all.Count())
	}
	for _, q := range []float64{0.01, 0.5, 0.95, 0.99} {
		if got, want := merged.Quantile(q), all.Quantile(q); got != want {
			t.Errorf("q=%v: merged %v, direct %v", q, got, want)
		}
	}
}

func TestPackKeepsCountsAndAcceptsLateData(t *testing.T) {
	for _, count := range []uint64{1, 300, 70_000, 5_000_000_000} {
		var l Latency
		l.AddN(5, count)
		l.AddN(50, 2)
		before := l.Quantile(0.5)
		l.Pack()
		if l.counts != nil || l.width == 0 {
			t.Fatalf("count %d: not packed", count)
		}
		if got := l.Quantile(0.5); got != before {
			t.Errorf("count %d: p50 after pack %v, before %v", count, got, before)
		}
		l.Add(5000) // late data after packing
		if l.Count() != count+3 {
			t.Errorf("count %d: got %d after late add", count, l.Count())
		}
		if got := l.Quantile(1); math.Abs(got-5000)/5000 > RelativeAccuracy {
			t.Errorf("max after late add %v, want about 5000", got)
		}
	}
}

func TestEmptyHistogram(t *testing.T) {
	var l Latency
	if !math.IsNaN(l.Quantile(0.99)) {
		t.Errorf("empty quantile should be NaN, got %v", l.Quantile(0.99))
	}
	l.Pack()
	var m Latency
	m.Merge(&l)
	m.Merge(nil)
	if m.Count() != 0 {
		t.Errorf("merge of empties has count %d", m.Count())
	}
}

func TestPackedIsSmallerThanDense(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	var l Latency
	for _, v := range lognormal(r, 60, 20, 0.6) {
		l.Add(v)
	}
	dense := l.SizeBytes()
	l.Pack()
	if packed := l.SizeBytes(); packed*4 > dense {
		t.Errorf("packed %d bytes is not at least 4x smaller than dense %d", packed, dense)
	}
}

// Sub takes a merged histogram back out exactly, packed or not.
func TestSubUndoesMerge(t *testing.T) {
	var a, b Latency
	for i := 1; i <= 500; i++ {
		a.Add(float64(i))
		b.AddN(float64(i*7), uint64(i)) // counts over 255: packed 2 bytes wide
	}
	want, err := a.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	b.Pack()
	var sum Latency
	sum.Merge(&a)
	sum.Merge(&b)
	sum.Sub(&b)
	sum.Pack() // trims the bins only b used
	got, err := sum.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if sum.Count() != 500 || string(got) != string(want) {
		t.Fatalf("after Sub: %v (%d), want %v", &sum, sum.Count(), &a)
	}
}

// refQuantile is the plain bottom-up scan with the float rank comparison.
func refQuantile(l *Latency, q float64) float64 {
	rank := q * float64(l.n-1)
	var cum uint64
	for i := range l.bins() {
		cum += l.at(i)
		if float64(cum) > rank {
			return indexMapping.Value(int(l.offset) + i)
		}
	}
	return math.NaN()
}

// The mutable form answers high quantiles from the top, the packed form from
// the bottom: both must pick the same bin for every q, also with empty bins
// at the ends (a merged total after Sub).
func TestQuantileSameFromEitherEnd(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for round := 0; round < 50; round++ {
		var l, wide Latency
		for i := 0; i < 1+r.IntN(2000); i++ {
			l.AddN(math.Exp(3*r.NormFloat64()), uint64(1+r.IntN(3)))
		}
		wide.Add(0.002)
		wide.Add(1e6)
		wide.Merge(&l)
		edges := Latency{}
		edges.Add(0.002)
		edges.Add(1e6)
		wide.Sub(&edges) // same counts as l, zero bins far out on both sides
		packed := l.Clone()
		packed.Pack()
		for q := 0.0; q <= 1; q += 0.0005 {
			want := refQuantile(packed, q)
			if got := packed.Quantile(q); got != want {
				t.Fatalf("round %d q=%v: packed %v, reference scan %v", round, q, got, want)
			}
			if got := l.Quantile(q); got != want {
				t.Fatalf("round %d q=%v: mutable %v, packed %v", round, q, got, want)
			}
			if got := wide.Quantile(q); got != want {
				t.Fatalf("round %d q=%v: widened %v, packed %v", round, q, got, want)
			}
		}
		if got, want := l.Quantile(1), packed.Quantile(1); got != want {
			t.Fatalf("q=1: %v, want %v", got, want)
		}
	}
}

// Trim drops only empty end bins: same counts and quantiles, smaller, still
// mutable; an all-empty histogram becomes the zero value.
func TestTrimKeepsCounts(t *testing.T) {
	var l, far Latency
	for i := 1; i <= 300; i++ {
		l.Add(float64(i))
	}
	far.Add(0.002)
	far.Add(1e6)
	l.Merge(&far)
	l.Sub(&far)
	before := l.SizeBytes()
	want := []float64{l.Quantile(0), l.Quantile(0.5), l.Quantile(0.99), l.Quantile(1)}
	l.Trim()
	got := []float64{l.Quantile(0), l.Quantile(0.5), l.Quantile(0.99), l.Quantile(1)}
	if l.Count() != 300 || l.counts == nil || l.SizeBytes() >= before || l.counts[0] == 0 || l.counts[len(l.counts)-1] == 0 {
		t.Fatalf("after Trim: %v, %d bytes (before %d)", &l, l.SizeBytes(), before)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("quantiles %v after Trim, want %v", got, want)
		}
	}
	l.Sub(l.Clone())
	l.Trim()
	if l.counts != nil || l.Count() != 0 {
		t.Fatalf("emptied and trimmed: %v", &l)
	}
}

// TestAddIndexAndReserveLike: adding by bin index is adding the latency, and
// reserving room changes no count (only the extent, trimmed by Pack).
func TestAddIndexAndReserveLike(t *testing.T) {
	var wide, byValue, byIndex Latency
	for _, ms := range []float64{0.5, 3, 20, 20, 400, 9000} {
		wide.Add(ms)
	}
	byIndex.ReserveLike(&wide)
	if byIndex.Count() != 0 || byIndex.bins() == 0 {
		t.Fatalf("reserved histogram: %d latencies in %d bins, want 0 latencies and room", byIndex.Count(), byIndex.bins())
	}
	for _, ms := range []float64{7, 20, 20, 1e9, -1} {
		byValue.Add(ms)
		byIndex.AddIndex(Index(ms), 1)
	}
	byValue.Pack()
	byIndex.Pack()
	a, _ := byValue.MarshalBinary()
	b, _ := byIndex.MarshalBinary()
	if string(a) != string(b) || byIndex.Count() != 5 {
		t.Fatalf("by index %v, by value %v", &byIndex, &byValue)
	}
	packed := byIndex
	packed.ReserveLike(&wide) // a packed histogram keeps its form
	if packed.bins() != byIndex.bins() {
		t.Fatalf("ReserveLike unpacked a packed histogram")
	}
}

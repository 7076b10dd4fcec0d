package testenv

import (
	"math"
	"slices"
	"time"
)

// MetricReporter is the part of *testing.B that ReportLatencies needs.
type MetricReporter interface {
	ReportMetric(n float64, unit string)
}

// ReportLatencies reports the mean and the p99 of per-iteration durations as
// the benchmark metrics mean-ms and p99-ms (docs/BENCHMARKS.md quotes both).
func ReportLatencies(b MetricReporter, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	slices.Sort(ds)
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	p99 := ds[min(len(ds)-1, int(math.Ceil(0.99*float64(len(ds))))-1)]
	b.ReportMetric(float64(sum.Microseconds())/float64(len(ds))/1000, "mean-ms")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
}

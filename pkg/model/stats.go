package model

import (
	"math"

	"github.com/livemap/servicemap/pkg/sketch"
)

// Stats is the traffic of an edge (or what a node serves) over some time.
type Stats struct {
	Calls        uint64  // requests / calls
	Errors       uint64  // failed calls
	LatencySumMs float64 // for the average
	Connections  uint64  // TCP connections seen (network evidence)
	Latency      sketch.Latency
}

// Add merges o into s.
func (s *Stats) Add(o *Stats) {
	s.AddCounts(o)
	s.Latency.Merge(&o.Latency)
}

// AddCounts adds o's counters and latency sum but not its histogram (for a
// caller that merges histograms in bulk, such as the store's range queries).
func (s *Stats) AddCounts(o *Stats) {
	s.Calls += o.Calls
	s.Errors += o.Errors
	s.LatencySumMs += o.LatencySumMs
	s.Connections += o.Connections
}

// ErrorRate is errors/calls, NaN without calls.
func (s *Stats) ErrorRate() float64 {
	if s.Calls == 0 {
		return math.NaN()
	}
	return float64(s.Errors) / float64(s.Calls)
}

// AvgLatencyMs is the mean latency, NaN without timed calls.
func (s *Stats) AvgLatencyMs() float64 {
	if s.Latency.Count() == 0 {
		return math.NaN()
	}
	return s.LatencySumMs / float64(s.Latency.Count())
}

// P99Ms is the 99th percentile latency (within 1 %), NaN without timed calls.
func (s *Stats) P99Ms() float64 { return s.Latency.Quantile(0.99) }

// Rate is calls per second over a window of the given seconds.
func (s *Stats) Rate(seconds float64) float64 {
	if seconds <= 0 {
		return 0
	}
	return float64(s.Calls) / seconds
}

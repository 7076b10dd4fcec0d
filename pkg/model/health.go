package model

import (
	"fmt"
	"math"
)

// Health is a traffic light against the SLO.
type Health uint8

const (
	HealthUnknown Health = iota // no calls in the range: nothing to judge
	HealthGreen
	HealthYellow // approaching a limit: at or past the warning fraction of it
	HealthRed    // a limit breached
)

func (h Health) String() string {
	return [...]string{"unknown", "green", "yellow", "red"}[h]
}

// Color is the colour the node graph panel paints.
func (h Health) Color() string {
	return [...]string{"#8e8e8e", "#73BF69", "#FADE2A", "#F2495C"}[h]
}

// SLO is the objective of one service.
type SLO struct {
	ErrorRate       float64 // breached when the error rate reaches it (fraction: 0.01 = 1 %)
	P99LatencyMs    float64 // breached when p99 exceeds it; 0 = no latency objective
	WarningFraction float64 // "approaching" from this fraction of a limit (0.8)
}

// DefaultSLO is used where nothing is configured.
var DefaultSLO = SLO{ErrorRate: 0.01, P99LatencyMs: 500, WarningFraction: 0.8}

// Validate names the bad field.
func (s SLO) Validate() error {
	switch {
	case !(s.ErrorRate > 0 && s.ErrorRate <= 1):
		return fmt.Errorf("errorRate must be a fraction in (0, 1], got %v", s.ErrorRate)
	case s.P99LatencyMs < 0 || math.IsNaN(s.P99LatencyMs):
		return fmt.Errorf("p99LatencyMs must be >= 0, got %v", s.P99LatencyMs)
	case !(s.WarningFraction > 0 && s.WarningFraction <= 1):
		return fmt.Errorf("warningFraction must be in (0, 1], got %v", s.WarningFraction)
	}
	return nil
}

// Judge rates an error rate and p99 against the SLO. NaN inputs (no calls, no
// timings) are not judged; with neither, the health is unknown.
//
//	red:    errorRate >= ErrorRate, or p99 > P99LatencyMs
//	yellow: errorRate >= WarningFraction*ErrorRate, or p99 >= WarningFraction*P99LatencyMs
//	green:  otherwise
func (s SLO) Judge(errorRate, p99Ms float64) Health {
	haveErr, haveLat := !math.IsNaN(errorRate), !math.IsNaN(p99Ms) && s.P99LatencyMs > 0
	if !haveErr && !haveLat {
		return HealthUnknown
	}
	h := HealthGreen
	if haveErr {
		switch {
		case errorRate >= s.ErrorRate:
			return HealthRed
		case errorRate >= s.WarningFraction*s.ErrorRate:
			h = HealthYellow
		}
	}
	if haveLat {
		switch {
		case p99Ms > s.P99LatencyMs:
			return HealthRed
		case p99Ms >= s.WarningFraction*s.P99LatencyMs:
			h = HealthYellow
		}
	}
	return h
}

// SLOs holds the default and per-service overrides.
type SLOs struct {
	Default   SLO
	Overrides map[string]SLO // by node id; fields already filled from Default
}

// For returns the SLO of a service.
func (s SLOs) For(service string) SLO {
	if o, ok := s.Overrides[service]; ok {
		return o
	}
	return s.Default
}

package model

import "time"

// EdgeKey names a directed dependency: Source calls Target.
type EdgeKey struct {
	Source, Target string
}

// ID is the edge id used in frames and links.
func (k EdgeKey) ID() string { return k.Source + "->" + k.Target }

// EdgeInfo is what the sources know about an edge besides its traffic.
type EdgeInfo struct {
	Protocol       string // gRPC, HTTP, kafka, postgresql, TCP, ...
	CircuitBreaker string // e.g. "consecutive5xx=5, interval=10s"
	RetryPolicy    string // e.g. "attempts=3, perTryTimeout=2s"
	OwnerTeam      string // the owner team of the callee, when known
	Tier           string
	LastDeploy     time.Time
}

// Merge fills the empty fields of e from o; a learned protocol from traces
// ("gRPC") beats a bare transport ("TCP").
func (e *EdgeInfo) Merge(o EdgeInfo) {
	if o.Protocol != "" && (e.Protocol == "" || e.Protocol == "TCP") {
		e.Protocol = o.Protocol
	}
	if o.CircuitBreaker != "" {
		e.CircuitBreaker = o.CircuitBreaker
	}
	if o.RetryPolicy != "" {
		e.RetryPolicy = o.RetryPolicy
	}
	if o.OwnerTeam != "" {
		e.OwnerTeam = o.OwnerTeam
	}
	if o.Tier != "" {
		e.Tier = o.Tier
	}
	if o.LastDeploy.After(e.LastDeploy) {
		e.LastDeploy = o.LastDeploy
	}
}

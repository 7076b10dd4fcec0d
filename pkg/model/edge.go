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

// Merge fills e from o: a non-empty field of o replaces e's, except that a
// learned protocol from traces ("gRPC") beats a bare transport ("TCP") and is
// never replaced; the later deploy wins. It reports whether e changed (so a
// caller merging the same info again and again can skip storing it).
func (e *EdgeInfo) Merge(o EdgeInfo) (changed bool) {
	set := func(dst *string, v string) {
		if v != "" && *dst != v {
			*dst = v
			changed = true
		}
	}
	if e.Protocol == "" || e.Protocol == "TCP" {
		set(&e.Protocol, o.Protocol)
	}
	set(&e.CircuitBreaker, o.CircuitBreaker)
	set(&e.RetryPolicy, o.RetryPolicy)
	set(&e.OwnerTeam, o.OwnerTeam)
	set(&e.Tier, o.Tier)
	if o.LastDeploy.After(e.LastDeploy) {
		e.LastDeploy = o.LastDeploy
		changed = true
	}
	return changed
}

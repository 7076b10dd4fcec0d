package api

import "time"

// The gateway endpoint, GET /v1/gateway?after=SEQ&epoch=EPOCH, serves what
// the agent learned from a gateway's (nginx, Envoy, HAProxy …) access log:
// closed one-minute aggregates per (caller, service), each with a sequence
// number. A client remembers the epoch and the highest Seq it applied and
// asks for what came after, so a bucket is applied exactly once even when
// the plugin polls less often than the agent closes minutes, and nothing is
// lost while the agent keeps the bucket (Oldest says how far back it goes).
//
// Field semantics are documented in docs/gateway.md.

// GatewayReport is one answer of GET /v1/gateway.
type GatewayReport struct {
	// SchemaVersion is bumped on incompatible changes (currently 1).
	SchemaVersion int `json:"schemaVersion"`
	// Node is the Kubernetes node name (NODE_NAME) or the host name.
	Node string `json:"node"`
	// Epoch changes whenever the agent restarts (Seq starts again at 1). A
	// client whose remembered epoch differs starts from after=0.
	Epoch string `json:"epoch"`
	// LastSeq is the highest sequence number closed so far (0: none yet).
	LastSeq uint64 `json:"lastSeq"`
	// Oldest is the lowest sequence number still held. If the client's
	// after+1 < Oldest, buckets after..Oldest-1 were dropped before they were
	// fetched: Gap says how many, so the loss is reported, not hidden.
	Oldest uint64 `json:"oldest"`
	Gap    uint64 `json:"gap,omitempty"`
	// Buckets with Seq > after, ascending by Seq; at most one answer's worth
	// (More is true when the client should ask again with the last Seq).
	Buckets []GatewayBucket `json:"buckets"`
	More    bool            `json:"more,omitempty"`
	// Lines counts access-log lines read since the agent started.
	Lines LineCounts `json:"lines"`
	// Files is the state of each tailed log file.
	Files []TailedFile `json:"files"`
}

// GatewayBucket aggregates one minute of requests from one caller to one
// service. Seq is unique and ascending within an epoch.
type GatewayBucket struct {
	Seq uint64 `json:"seq"`
	// Minute is the start of the minute (UTC, whole minute) of the requests'
	// time stamps (the log's request end time minus its duration is not
	// attempted: the log's own time field is used as-is).
	Minute time.Time `json:"minute"`
	// Caller is "user" for anonymous external clients, or the name of the
	// caller CIDR rule the client address matched.
	Caller string `json:"caller"`
	// Service is the upstream service the gateway routed to.
	Service string `json:"service"`
	// Protocol is "http" or "grpc".
	Protocol string `json:"protocol"`
	Calls    uint64 `json:"calls"`
	// Errors counts responses with status >= 500 (and gRPC status other than
	// OK when the log carries it); 4xx are the client's fault and are not
	// counted.
	Errors       uint64  `json:"errors"`
	LatencySumMs float64 `json:"latencySumMs"`
	// Latency is the request-time histogram, pkg/sketch.Latency's
	// MarshalBinary encoding (base64 in JSON).
	Latency []byte `json:"latency"`
	// Clients is a HyperLogLog (github.com/axiomhq/hyperloglog, precision
	// 14, MarshalBinary encoding) of the distinct client keys of the
	// requests: the configured client field (e.g. a user-id header), else
	// the client address.
	Clients []byte `json:"clients"`
}

// LineCounts counts access-log lines by outcome. Every line read lands in
// exactly one of Parsed and Bad; BadByReason splits Bad.
type LineCounts struct {
	Parsed      uint64            `json:"parsed"`
	Bad         uint64            `json:"bad"`
	BadByReason map[string]uint64 `json:"badByReason,omitempty"`
	// LastBad is the most recent bad line's reason and (truncated) text.
	LastBad string `json:"lastBad,omitempty"`
}

// TailedFile is the state of one tailed access log.
type TailedFile struct {
	Path string `json:"path"`
	// Offset is the byte offset read up to in the current file.
	Offset int64 `json:"offset"`
	// Rotations counts renames/truncations the tailer followed.
	Rotations uint64 `json:"rotations"`
	// Error is the last error opening or reading the file, if any.
	Error string `json:"error,omitempty"`
}

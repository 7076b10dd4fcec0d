// Package api holds the JSON types served by the servicemap node agent at
// GET /v1/snapshot. It has no dependencies beyond the standard library so the
// data source plugin can import it to consume snapshots.
//
// GET /v1/snapshot?after=SEQ&epoch=EPOCH[&sampled=SEQ] adds to the last
// snapshot the closed births (Namespace.Closed) of every poll after SEQ that
// the agent still holds (Snapshot.Births), and the connections closed in
// those polls that no snapshot since the client's sampled poll (default
// after) showed, so a client that fetches less often than the agent polls
// neither loses nor double counts them: it remembers the epoch,
// Births.Through and the Seq of the last snapshot whose rows it applied and
// asks with those next time. Without the parameters Births covers the last
// poll only; after=0 alone (a client's first contact) every held poll.
//
// Field semantics are documented in docs/agent.md.
package api

import "time"

// Direction values of Conn.Direction and Flow.Direction.
const (
	Inbound  = "inbound"
	Outbound = "outbound"
)

// Method values of Namespace.Method and Snapshot.Method.
const (
	MethodNetlink = "netlink" // NETLINK_SOCK_DIAG dump inside the namespace
	MethodProc    = "proc"    // /proc/PID/net/tcp and tcp6
	MethodMixed   = "mixed"   // some namespaces by netlink, some by proc (Snapshot only)
)

// Snapshot is one poll of every network namespace of a node.
type Snapshot struct {
	// SchemaVersion is bumped on incompatible changes (currently 2: version
	// 1 had no Epoch and no Births).
	SchemaVersion int `json:"schemaVersion"`
	// Epoch is random per agent process: Seq starts again at 1 when it
	// changes (the agent restarted).
	Epoch string `json:"epoch"`
	// Node is the Kubernetes node name (NODE_NAME) or the host name.
	Node string `json:"node"`
	// Seq counts polls since the agent started (1 for the first).
	Seq uint64 `json:"seq"`
	// TakenAt is when the poll started.
	TakenAt time.Time `json:"takenAt"`
	// PollSeconds is the configured poll interval.
	PollSeconds float64 `json:"pollSeconds"`
	// SincePreviousSeconds is the time since the previous poll started (0 on
	// the first poll); closed-connection counts and counter deltas cover it.
	SincePreviousSeconds float64 `json:"sincePreviousSeconds"`
	// Method is netlink, proc or mixed.
	Method string `json:"method"`
	// Namespaces are sorted by inode; each network namespace appears once.
	// Empty when Births.More: the rows come with the answer whose births
	// reach Seq (a client applies them only there).
	Namespaces []Namespace `json:"namespaces"`
	// Cost is what this poll cost the agent.
	Cost Cost `json:"cost"`
	// Errors counts problems by reason (e.g. "proc.bad_hex"); omitted if none.
	Errors map[string]int `json:"errors,omitempty"`
	// Truncated is true if connections were dropped to fit the response
	// size limit; Truncation then says how many.
	Truncated  bool        `json:"truncated"`
	Truncation *Truncation `json:"truncation,omitempty"`
	// Births are the closed births of the polls the request asked for; see
	// the package comment. Never truncated with the connections.
	Births *Births `json:"births,omitempty"`
}

// SchemaVersion is the Snapshot.SchemaVersion this package describes.
const SchemaVersion = 2

// Births answers the after/epoch query: the closed births of the polls in
// (After, Through], oldest first.
type Births struct {
	// After is the poll the births are counted from: the request's after,
	// or 0 when the request's epoch is not the agent's (it restarted; the
	// births of the previous run that were not fetched are lost), or
	// Through-1 when the request had no after, 0 for after=0 alone.
	After uint64 `json:"after"`
	// Through is the last poll covered: the snapshot's Seq, unless More.
	// The client asks next with after=Through.
	Through uint64 `json:"through"`
	// Sampled is the poll whose rows the client applied last (the
	// request's sampled, else After): ClosedUnsampled counts connections
	// first seen after it.
	Sampled uint64 `json:"sampled"`
	// Oldest is the oldest poll whose births the agent still holds.
	Oldest uint64 `json:"oldest"`
	// Gap counts polls in (After, Oldest) whose births were dropped before
	// they were fetched (held births are bounded by the agent's
	// -births-retention): they are lost, and reported here.
	Gap uint64 `json:"gap,omitempty"`
	// More is true when the response size bound stopped before the
	// snapshot's Seq: ask again with after=Through.
	More bool `json:"more,omitempty"`
	// Polls in (After, Through] that had at least one birth or unsampled
	// closed connection, ascending by Seq.
	Polls []PollBirths `json:"polls"`
}

// PollBirths are the closed births of one poll.
type PollBirths struct {
	Seq     uint64    `json:"seq"`
	TakenAt time.Time `json:"takenAt"`
	// SincePreviousSeconds is the time the births were born in.
	SincePreviousSeconds float64 `json:"sincePreviousSeconds"`
	// Namespaces with at least one closed or unsampled flow, sorted by inode.
	Namespaces []NamespaceBirths `json:"namespaces"`
}

// NamespaceBirths is Namespace.Closed of one poll with the namespace's
// identity as of that poll (the namespace may be gone since).
type NamespaceBirths struct {
	Inode       uint64   `json:"inode"`
	PodUID      string   `json:"podUID,omitempty"`
	HostNetwork bool     `json:"hostNetwork,omitempty"`
	IPs         []string `json:"ips"`
	Closed      []Flow   `json:"closed"`
	// ClosedUnsampled counts connections that turned TIME_WAIT in this
	// poll (this side closed first) after being seen in another state by
	// polls that all came after the request's sampled poll: connections the
	// client never had in a fetched snapshot. ClosedSinceLastPoll is the
	// count.
	ClosedUnsampled []Flow `json:"closedUnsampled,omitempty"`
}

// Truncation describes connections dropped from a served snapshot.
type Truncation struct {
	MaxBytes           int `json:"maxBytes"`
	TotalConnections   int `json:"totalConnections"`
	KeptConnections    int `json:"keptConnections"`
	DroppedConnections int `json:"droppedConnections"`
}

// Namespace is one network namespace (usually one pod, or the host).
type Namespace struct {
	// Inode of /proc/PID/ns/net: the namespace identity on this node.
	Inode uint64 `json:"inode"`
	// PIDs are the lowest few PIDs in the namespace (at most a configured
	// number); PIDCount is how many PIDs were found in total.
	PIDs     []int `json:"pids"`
	PIDCount int   `json:"pidCount"`
	// PodUID and ContainerID come from /proc/PID/cgroup, best effort.
	PodUID      string `json:"podUID,omitempty"`
	ContainerID string `json:"containerID,omitempty"`
	// HostNetwork is true for the namespace of PID 1 under the proc root.
	HostNetwork bool `json:"hostNetwork,omitempty"`
	// Method used to read this namespace's TCP table.
	Method string `json:"method"`
	// FirstSeen is true on the first poll that saw this namespace: Closed and
	// Counters.Delta have no baseline then and are empty.
	FirstSeen bool `json:"firstSeen,omitempty"`
	// IPs are the interface addresses (no loopback, no IPv6 link-local),
	// sorted.
	IPs []string `json:"ips"`
	// Listeners are TCP sockets in LISTEN state, sorted.
	Listeners []Listener `json:"listeners"`
	// Connections are all other TCP sockets except CLOSE, sorted by
	// local, remote, state.
	Connections []Conn `json:"connections"`
	// Closed aggregates TIME_WAIT rows whose 4-tuple was not present in the
	// previous poll: connections born and closed since that poll.
	Closed []Flow `json:"closed,omitempty"`
	// NewConnections counts connection rows (any state) whose 4-tuple was
	// not present in the previous poll (0 when FirstSeen).
	NewConnections int `json:"newConnections"`
	// Counters are the namespace's TCP MIB counters.
	Counters NSCounters `json:"counters"`
}

// Endpoint is an IP address and port. IPv4-mapped IPv6 addresses are
// reported as plain IPv4.
type Endpoint struct {
	IP   string `json:"ip"`
	Port uint16 `json:"port"`
}

// Listener is a LISTEN socket.
type Listener struct {
	Endpoint
	// AcceptQueue is the number of connections waiting for accept()
	// (idiag_rqueue / rx_queue).
	AcceptQueue uint32 `json:"acceptQueue"`
	// Backlog is the accept queue limit (idiag_wqueue); 0 when read from
	// /proc, which does not expose it.
	Backlog uint32 `json:"backlog"`
}

// Conn is one TCP socket that is not LISTEN.
type Conn struct {
	Local  Endpoint `json:"local"`
	Remote Endpoint `json:"remote"`
	// State is the kernel state name: ESTABLISHED, SYN_SENT, SYN_RECV,
	// FIN_WAIT1, FIN_WAIT2, TIME_WAIT, CLOSE_WAIT, LAST_ACK, CLOSING.
	State string `json:"state"`
	// Direction is inbound if the local port is a LISTEN port in the same
	// namespace (on the wildcard address or on the local IP), else outbound.
	Direction string `json:"direction"`
	// New is true if the 4-tuple was not present in the previous poll.
	New bool `json:"new,omitempty"`
}

// Flow aggregates closed connections. For outbound flows Local.Port is 0
// (ephemeral ports are not kept); for inbound flows Remote.Port is 0.
type Flow struct {
	Direction           string   `json:"direction"`
	Local               Endpoint `json:"local"`
	Remote              Endpoint `json:"remote"`
	ClosedSinceLastPoll int      `json:"closedSinceLastPoll"`
}

// NSCounters are the namespace's TCP counters from /proc/PID/net/snmp
// ("Tcp:") and /proc/PID/net/netstat ("TcpExt:"). Values are totals since
// the namespace was created; Delta is the change since the previous poll.
type NSCounters struct {
	Valid           bool          `json:"valid"`
	ActiveOpens     uint64        `json:"activeOpens"`
	PassiveOpens    uint64        `json:"passiveOpens"`
	AttemptFails    uint64        `json:"attemptFails"`
	EstabResets     uint64        `json:"estabResets"`
	CurrEstab       uint64        `json:"currEstab"`
	ListenOverflows uint64        `json:"listenOverflows"`
	ListenDrops     uint64        `json:"listenDrops"`
	Delta           *CounterDelta `json:"delta,omitempty"`
}

// CounterDelta is the change of the counters since the previous poll.
type CounterDelta struct {
	ActiveOpens     uint64 `json:"activeOpens"`
	PassiveOpens    uint64 `json:"passiveOpens"`
	AttemptFails    uint64 `json:"attemptFails"`
	EstabResets     uint64 `json:"estabResets"`
	ListenOverflows uint64 `json:"listenOverflows"`
	ListenDrops     uint64 `json:"listenDrops"`
	// UnobservedOpens estimates connections opened since the previous poll
	// that no row of this poll shows: ActiveOpens+PassiveOpens deltas minus
	// NewConnections, floored at 0. Failed connects count as opens, so this
	// is an upper bound on missed short-lived connections.
	UnobservedOpens uint64 `json:"unobservedOpens"`
}

// Cost is what one poll cost the agent process.
type Cost struct {
	WallSeconds float64 `json:"wallSeconds"`
	// CPU time of the whole agent process (getrusage RUSAGE_SELF) during
	// the poll, user and system.
	CPUUserSeconds   float64        `json:"cpuUserSeconds"`
	CPUSystemSeconds float64        `json:"cpuSystemSeconds"`
	PIDsScanned      int            `json:"pidsScanned"`
	NamespacesRead   int            `json:"namespacesRead"`
	SocketsSeen      int            `json:"socketsSeen"`
	Methods          map[string]int `json:"methods"`
	Errors           int            `json:"errors"`
}

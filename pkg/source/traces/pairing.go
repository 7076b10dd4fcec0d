package traces

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"

	"github.com/livemap/servicemap/pkg/model"
	"github.com/livemap/servicemap/pkg/store"
)

// Span is one row of the spans table, reduced to what pairing needs.
type Span struct {
	TraceID, SpanID, ParentSpanID string
	Service                       string
	Kind                          Kind
	Start                         time.Time
	DurationMs                    float64
	Failed                        bool
	Attrs                         Attributes
}

// Attributes are the span attributes that name peers and protocols.
type Attributes struct {
	PeerService      string // peer.service
	DBSystem         string // db.system (db.system.name)
	DBNamespace      string // db.namespace, else db.name
	ServerAddress    string // server.address, else net.peer.name
	ServerPort       string // server.port, else net.peer.port
	RPCSystem        string // rpc.system
	HTTPMethod       string // http.request.method, else http.method
	MessagingSystem  string // messaging.system
	MessagingDest    string // messaging.destination.name
	ServiceNamespace string // resource service.namespace
}

// Kind is the OpenTelemetry span kind.
type Kind uint8

const (
	KindUnspecified Kind = iota
	KindInternal
	KindServer
	KindClient
	KindProducer
	KindConsumer
)

// ParseKind accepts "SERVER", "SPAN_KIND_SERVER", "Server" and the OTLP
// numbers 1..5.
func ParseKind(s string) Kind {
	s = strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(s)), "SPAN_KIND_")
	switch s {
	case "INTERNAL", "1":
		return KindInternal
	case "SERVER", "2":
		return KindServer
	case "CLIENT", "3":
		return KindClient
	case "PRODUCER", "4":
		return KindProducer
	case "CONSUMER", "5":
		return KindConsumer
	}
	return KindUnspecified
}

// ParseFailed accepts "ERROR", "STATUS_CODE_ERROR", "Error" and the OTLP 2.
func ParseFailed(status string) bool {
	s := strings.ToUpper(strings.TrimSpace(status))
	return s == "2" || strings.HasSuffix(s, "ERROR")
}

func (k Kind) callerSide() bool { return k == KindClient || k == KindProducer }
func (k Kind) calleeSide() bool { return k == KindServer || k == KindConsumer }

type spanKey struct {
	trace [16]byte
	span  [8]byte
}

// keyOf decodes hex ids; ids in any other form are hashed into the same
// shape so they still pair exactly.
func keyOf(traceID, spanID string) spanKey {
	var k spanKey
	if len(traceID) != 32 || !decodeHex(k.trace[:], traceID) {
		h := sha256.Sum256([]byte(traceID))
		copy(k.trace[:], h[:])
	}
	if len(spanID) != 16 || !decodeHex(k.span[:], spanID) {
		h := sha256.Sum256([]byte(spanID))
		copy(k.span[:], h[:])
	}
	return k
}

func decodeHex(dst []byte, s string) bool {
	_, err := hex.Decode(dst, []byte(s))
	return err == nil
}

// pending is a span kept while it may still be a parent.
type pending struct {
	service   string
	kind      Kind
	start     time.Time
	expires   time.Time // end + wait: no child can arrive after that
	durMs     float64
	failed    bool
	attrs     *Attributes // only for caller-side spans
	protocol  string
	paired    bool // a child made an edge with this span as the caller
	namespace string
}

type orphan struct {
	child   *pending
	expires time.Time
}

// Pairer turns spans into calls between services, as Tempo's service graph
// processor does, exactly once per call:
//
//   - a SERVER/CONSUMER span whose parent is a CLIENT/PRODUCER span makes the
//     edge parent service → child service (latency and time of the client
//     span; failed if either span failed);
//   - otherwise a child in another service than its parent makes the edge
//     (span kinds missing or INTERNAL); same-service parent/child pairs make
//     no edge;
//   - a CLIENT/PRODUCER span that no child answered within the wait becomes
//     an edge to a virtual node named from peer.service, then db.system +
//     db.namespace/db.name, then messaging.system, then server.address;
//   - a root SERVER/CONSUMER span (no parent id), or a root span with no kind
//     at all, is called by the virtual "user" node;
//   - a span whose parent never arrives within the wait is counted in
//     Unpaired and makes no edge (its caller is unknown).
//
// Spans may arrive in any order within the wait.
type Pairer struct {
	wait    time.Duration
	recent  map[spanKey]*pending
	orphans map[spanKey][]orphan // by parent key
	names   map[string]string    // interned service names
	// Counters for CheckHealth and tests.
	Spans, Calls, Unpaired, ClientsWithoutPeer uint64
}

// NewPairer waits up to `wait` after a span ends for its children.
func NewPairer(wait time.Duration) *Pairer {
	return &Pairer{wait: wait, recent: map[spanKey]*pending{}, orphans: map[spanKey][]orphan{}, names: map[string]string{}}
}

func (p *Pairer) intern(s string) string {
	if v, ok := p.names[s]; ok {
		return v
	}
	p.names[s] = s
	return s
}

// Add feeds one span; calls it completes go into the batch.
func (p *Pairer) Add(s *Span, b *store.Batch) {
	p.Spans++
	k := keyOf(s.TraceID, s.SpanID)
	end := s.Start.Add(time.Duration(s.DurationMs * float64(time.Millisecond)))
	pe := &pending{service: p.intern(s.Service), kind: s.Kind, start: s.Start, expires: end.Add(p.wait),
		durMs: s.DurationMs, failed: s.Failed, protocol: protocolOf(&s.Attrs), namespace: s.Attrs.ServiceNamespace}
	if s.Kind.callerSide() {
		a := s.Attrs
		pe.attrs = &a
	}
	p.recent[k] = pe
	if s.ParentSpanID == "" {
		if s.Kind.calleeSide() || s.Kind == KindUnspecified {
			p.emit(b, model.UserNodeID, pe.service, s.Start, s.DurationMs, s.Failed, pe.protocol)
		}
	} else {
		pk := keyOf(s.TraceID, s.ParentSpanID)
		if parent, ok := p.recent[pk]; ok {
			p.pair(parent, pe, b)
		} else {
			p.orphans[pk] = append(p.orphans[pk], orphan{child: pe, expires: s.Start.Add(p.wait)})
		}
	}
	if waiting, ok := p.orphans[k]; ok { // children that came first (clock skew, order)
		delete(p.orphans, k)
		for _, o := range waiting {
			p.pair(pe, o.child, b)
		}
	}
}

func (p *Pairer) pair(parent, child *pending, b *store.Batch) {
	protocol := parent.protocol
	if protocol == "" {
		protocol = child.protocol
	}
	switch {
	case parent.kind.callerSide() && child.kind.calleeSide():
		parent.paired = true
		p.emit(b, parent.service, child.service, parent.start, parent.durMs, parent.failed || child.failed, protocol)
	case parent.service != child.service:
		if parent.kind.callerSide() {
			parent.paired = true
			p.emit(b, parent.service, child.service, parent.start, parent.durMs, parent.failed || child.failed, protocol)
			return
		}
		p.emit(b, parent.service, child.service, child.start, child.durMs, child.failed, protocol)
	}
}

func (p *Pairer) emit(b *store.Batch, from, to string, at time.Time, durMs float64, failed bool, protocol string) {
	p.Calls++
	key := model.EdgeKey{Source: from, Target: to}
	b.AddCall(key, at, durMs, failed)
	if protocol != "" {
		b.AddEdgeInfo(key, model.EdgeInfo{Protocol: protocol})
	}
}

// Expire settles every span whose wait ended before `cursor`: unanswered
// client spans become calls to virtual nodes, orphans are given up.
func (p *Pairer) Expire(cursor time.Time, b *store.Batch) {
	for k, pe := range p.recent {
		if !pe.expires.Before(cursor) {
			continue
		}
		delete(p.recent, k)
		if !pe.kind.callerSide() || pe.paired {
			continue
		}
		node, ok := virtualNode(pe)
		if !ok {
			p.ClientsWithoutPeer++
			continue
		}
		b.AddNode(node)
		p.emit(b, pe.service, node.ID, pe.start, pe.durMs, pe.failed, pe.protocol)
	}
	for k, list := range p.orphans {
		kept := list[:0]
		for _, o := range list {
			if o.expires.Before(cursor) {
				p.Unpaired++
			} else {
				kept = append(kept, o)
			}
		}
		if len(kept) == 0 {
			delete(p.orphans, k)
		} else {
			p.orphans[k] = kept
		}
	}
}

// Pending is how many spans are held for pairing.
func (p *Pairer) Pending() int { return len(p.recent) }

// virtualNode names the uninstrumented peer of a client span. Databases are
// keyed by system, name and address — or, without an address, by the
// caller's namespace (else the caller) — so two apps' databases with the
// same name stay two nodes.
func virtualNode(pe *pending) (model.NodeInfo, bool) {
	a := pe.attrs
	if a == nil {
		return model.NodeInfo{}, false
	}
	addr := a.ServerAddress
	if addr != "" && a.ServerPort != "" {
		addr += ":" + a.ServerPort
	}
	scope := func() string {
		switch {
		case addr != "":
			return "@" + addr
		case pe.namespace != "":
			return "@" + pe.namespace
		default:
			return "@" + pe.service
		}
	}
	switch {
	case a.PeerService != "":
		kind := model.KindExternal
		if a.DBSystem != "" {
			kind = model.KindDatabase
		} else if a.MessagingSystem != "" {
			kind = model.KindMessaging
		}
		return model.NodeInfo{ID: a.PeerService, Kind: kind}, true
	case a.DBSystem != "":
		name := a.DBNamespace
		if name == "" {
			name = a.DBSystem
		}
		return model.NodeInfo{ID: a.DBSystem + ":" + name + scope(), Title: name + " (" + a.DBSystem + ")", Kind: model.KindDatabase,
			Attributes: map[string]string{"db_system": a.DBSystem, "server_address": addr}}, true
	case a.MessagingSystem != "":
		name := a.MessagingDest
		if name == "" {
			name = a.MessagingSystem
		}
		return model.NodeInfo{ID: a.MessagingSystem + ":" + name, Title: name + " (" + a.MessagingSystem + ")", Kind: model.KindMessaging}, true
	case addr != "":
		return model.NodeInfo{ID: addr, Kind: model.KindExternal}, true
	}
	return model.NodeInfo{}, false
}

// protocolOf names the protocol from semantic-convention attributes.
func protocolOf(a *Attributes) string {
	switch {
	case a.RPCSystem != "":
		if strings.EqualFold(a.RPCSystem, "grpc") {
			return "gRPC"
		}
		return a.RPCSystem
	case a.MessagingSystem != "":
		return a.MessagingSystem
	case a.DBSystem != "":
		return a.DBSystem
	case a.HTTPMethod != "":
		return "HTTP"
	}
	return ""
}

package traces

import (
	"crypto/sha256"
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
	// KubeNamespace is the resource's k8s.namespace.name, else its
	// service.namespace: where a Namer looks the service up.
	KubeNamespace string
	Attrs         Attributes
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
func keyOf[T string | []byte](traceID, spanID T) spanKey {
	var k spanKey
	idInto(k.trace[:], traceID)
	idInto(k.span[:], spanID)
	return k
}

// idInto decodes a hex id of exactly the right length into dst, without
// allocating; any other id is hashed into dst.
func idInto[T string | []byte](dst []byte, id T) {
	if len(id) == 2*len(dst) {
		ok := true
		for i := range dst {
			hi, ok1 := fromHex(id[2*i])
			lo, ok2 := fromHex(id[2*i+1])
			dst[i] = hi<<4 | lo
			ok = ok && ok1 && ok2
		}
		if ok {
			return
		}
	}
	h := sha256.Sum256([]byte(id))
	copy(dst, h[:])
}

// fromHex accepts what encoding/hex.Decode accepts: 0-9, a-f, A-F.
func fromHex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
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

// row is a span as pairing holds it: ids decoded into fixed-size keys, the
// strings every span keeps interned, the peer attributes only for caller-side
// spans (the only ones that may become edges to virtual nodes).
type row struct {
	key, parent spanKey
	hasParent   bool
	service     string
	kind        Kind
	failed      bool
	start       time.Time
	durMs       float64
	protocol    string
	namespace   string // service.namespace (scopes database nodes)
	kubeNs      string // k8s.namespace.name, else service.namespace (Namer)
	attrs       *Attributes
}

// interner keeps one copy of each repeated string (service names, protocols,
// namespaces), so a span costs no string allocation once its values were seen.
type interner map[string]string

// bytes returns the interned copy of b; the lookup itself does not allocate.
func (in interner) bytes(b []byte) string {
	if v, ok := in[string(b)]; ok {
		return v
	}
	s := string(b)
	in[s] = s
	return s
}

func (in interner) string(s string) string {
	if v, ok := in[s]; ok {
		return v
	}
	in[s] = s
	return s
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
	names   interner             // for Add; the spans reader decodes with its own
	nodes   nodeNames            // service.name → node id with a Namer set
	free    []pending            // the rest of the current chunk (newPending)
	// Counters for CheckHealth and tests.
	Spans, Calls, Unpaired, ClientsWithoutPeer uint64
}

// NewPairer waits up to `wait` after a span ends for its children.
func NewPairer(wait time.Duration) *Pairer {
	return &Pairer{wait: wait, recent: map[spanKey]*pending{}, orphans: map[spanKey][]orphan{}, names: interner{}}
}

// Add feeds one span; calls it completes go into the batch.
func (p *Pairer) Add(s *Span, b *store.Batch) {
	r := rowOf(s, p.names)
	p.add(&r, b)
}

// rowOf is what pairing keeps of a span.
func rowOf(s *Span, names interner) row {
	r := row{key: keyOf(s.TraceID, s.SpanID), hasParent: s.ParentSpanID != "", service: names.string(s.Service),
		kind: s.Kind, failed: s.Failed, start: s.Start, durMs: s.DurationMs,
		protocol: protocolOf(&s.Attrs), namespace: s.Attrs.ServiceNamespace, kubeNs: s.KubeNamespace}
	if r.kubeNs == "" {
		r.kubeNs = s.Attrs.ServiceNamespace
	}
	if r.hasParent {
		r.parent = keyOf(s.TraceID, s.ParentSpanID)
	}
	if s.Kind.callerSide() {
		a := s.Attrs
		r.attrs = &a
	}
	return r
}

func (p *Pairer) add(s *row, b *store.Batch) {
	p.Spans++
	if p.nodes.namer != nil && s.kubeNs != "" {
		s.service = p.nodes.node(s.kubeNs, s.service)
	}
	end := s.start.Add(time.Duration(s.durMs * float64(time.Millisecond)))
	pe := p.newPending()
	*pe = pending{service: s.service, kind: s.kind, start: s.start, expires: end.Add(p.wait),
		durMs: s.durMs, failed: s.failed, attrs: s.attrs, protocol: s.protocol, namespace: s.namespace}
	p.recent[s.key] = pe
	if !s.hasParent {
		if s.kind.calleeSide() || s.kind == KindUnspecified {
			p.emit(b, model.UserNodeID, pe.service, s.start, s.durMs, s.failed, pe.protocol)
		}
	} else {
		if parent, ok := p.recent[s.parent]; ok {
			p.pair(parent, pe, b)
		} else {
			p.orphans[s.parent] = append(p.orphans[s.parent], orphan{child: pe, expires: s.start.Add(p.wait)})
		}
	}
	if waiting, ok := p.orphans[s.key]; ok { // children that came first (clock skew, order)
		delete(p.orphans, s.key)
		for _, o := range waiting {
			p.pair(pe, o.child, b)
		}
	}
}

// newPending hands out pending records from chunks: one allocation per 1,024
// spans instead of one per span. A chunk is freed once all its spans have
// expired, which is within the wait after the longest of them ended.
func (p *Pairer) newPending() *pending {
	if len(p.free) == 0 {
		p.free = make([]pending, 1024)
	}
	pe := &p.free[0]
	p.free = p.free[1:]
	return pe
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

package agent

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/axiomhq/hyperloglog"

	"github.com/livemap/servicemap/pkg/agent/accesslog"
	"github.com/livemap/servicemap/pkg/agent/api"
	"github.com/livemap/servicemap/pkg/sketch"
)

// Gateway-path defaults (see docs/agent.md, "Gateway access logs").
const (
	DefaultGatewayPoll       = 500 * time.Millisecond
	DefaultGatewayLateness   = 10 * time.Second
	DefaultGatewayRetention  = 2 * time.Hour
	DefaultGatewayRotateWait = 5 * time.Second
	DefaultGatewayMaxLine    = 64 << 10
	// DefaultGatewayMaxBuckets bounds the buckets of one answer.
	DefaultGatewayMaxBuckets = 1000
	// DefaultGatewayMaxOpen bounds the minute buckets still open, so a log
	// with unbounded service names cannot exhaust memory.
	DefaultGatewayMaxOpen = 50000
	// DefaultGatewayMaxHeld bounds the closed buckets kept (estimated JSON
	// bytes): a dense HyperLogLog is 16 KiB, so 2 h of many busy services
	// would otherwise hold gigabytes.
	DefaultGatewayMaxHeld = 256 << 20
	// gatewayMaxFuture rejects lines stamped further ahead of the agent's
	// clock (they would hold a bucket open for that long).
	gatewayMaxFuture = 5 * time.Minute
	lastBadMax       = 200
)

// Bad-line reasons added by the aggregator (accesslog adds its own).
const (
	ReasonFutureTime = "future_time"
	ReasonTooMany    = "too_many_buckets"
)

// CallerRule names the callers whose address is in Prefix.
type CallerRule struct {
	Name   string
	Prefix netip.Prefix
}

// ParseCallerRule parses NAME=CIDR.
func ParseCallerRule(s string) (CallerRule, error) {
	name, cidr, ok := strings.Cut(s, "=")
	name = strings.TrimSpace(name)
	if !ok || name == "" {
		return CallerRule{}, fmt.Errorf("caller rule %q: want NAME=CIDR", s)
	}
	p, err := netip.ParsePrefix(strings.TrimSpace(cidr))
	if err != nil {
		return CallerRule{}, fmt.Errorf("caller rule %q: %w", s, err)
	}
	return CallerRule{Name: name, Prefix: p.Masked()}, nil
}

// GatewayConfig configures the gateway access-log path.
type GatewayConfig struct {
	Node  string
	Paths []string
	// FromStart reads files present at start from their beginning.
	FromStart  bool
	Poll       time.Duration
	MaxLine    int
	RotateWait time.Duration
	Parser     accesslog.Config
	// Callers are matched in order; no match is "user".
	Callers []CallerRule
	// Lateness is how long after a minute's end lines for it are still
	// waited for before the minute's buckets are closed.
	Lateness time.Duration
	// Retention is how long closed buckets are kept for clients.
	Retention time.Duration
	// MaxBuckets and MaxBytes bound one answer (MaxBytes: estimated JSON
	// size; one bucket is always sent).
	MaxBuckets int
	MaxBytes   int
	MaxOpen    int
	// MaxHeld bounds the closed buckets held (estimated JSON bytes); the
	// oldest are dropped first, as if their retention had passed.
	MaxHeld int
	Logger  *slog.Logger
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
}

type bucketKey struct {
	minute   int64 // Unix seconds of the minute start
	caller   string
	service  string
	protocol string
}

type openBucket struct {
	calls, errors uint64
	sumMs         float64
	lat           sketch.Latency
	clients       *hyperloglog.Sketch
}

type closedBucket struct {
	api.GatewayBucket
	closedAt time.Time
	size     int // estimated JSON size
}

// Gateway tails access logs, aggregates requests per minute and serves
// closed minutes with sequence numbers (GET /v1/gateway).
type Gateway struct {
	cfg     GatewayConfig
	epoch   string
	tailers []*tailer
	parser  *accesslog.Parser // used by the Run goroutine only

	mu      sync.Mutex
	open    map[bucketKey]*openBucket
	closed  []closedBucket // ascending Seq
	held    int            // sum of closed[].size
	lastSeq uint64
	lines   api.LineCounts
}

// NewGateway validates cfg and returns a gateway; Run starts tailing.
func NewGateway(cfg GatewayConfig) (*Gateway, error) {
	if len(cfg.Paths) == 0 {
		return nil, errors.New("gateway: no access-log path")
	}
	cfg.Poll = cmp.Or(cfg.Poll, DefaultGatewayPoll)
	cfg.MaxLine = cmp.Or(cfg.MaxLine, DefaultGatewayMaxLine)
	cfg.RotateWait = cmp.Or(cfg.RotateWait, DefaultGatewayRotateWait)
	cfg.Retention = cmp.Or(cfg.Retention, DefaultGatewayRetention)
	cfg.MaxBuckets = cmp.Or(cfg.MaxBuckets, DefaultGatewayMaxBuckets)
	cfg.MaxBytes = cmp.Or(cfg.MaxBytes, DefaultMaxResponseBytes)
	cfg.MaxOpen = cmp.Or(cfg.MaxOpen, DefaultGatewayMaxOpen)
	cfg.MaxHeld = cmp.Or(cfg.MaxHeld, DefaultGatewayMaxHeld)
	if cfg.Lateness < 0 || cfg.Poll < 0 || cfg.Retention < 0 || cfg.MaxLine < 0 || cfg.MaxBuckets < 0 || cfg.MaxHeld < 0 {
		return nil, errors.New("gateway: negative duration or bound")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	parser, err := accesslog.NewParser(cfg.Parser)
	if err != nil {
		return nil, err
	}
	var e [8]byte
	rand.Read(e[:])
	g := &Gateway{cfg: cfg, epoch: hex.EncodeToString(e[:]), parser: parser,
		open: map[bucketKey]*openBucket{}, lines: api.LineCounts{BadByReason: map[string]uint64{}}}
	seen := map[string]bool{}
	for _, p := range cfg.Paths {
		if seen[p] {
			return nil, fmt.Errorf("gateway: access log %s given twice", p)
		}
		seen[p] = true
		g.tailers = append(g.tailers, newTailer(p, tailConfig{FromStart: cfg.FromStart, MaxLine: cfg.MaxLine, RotateWait: cfg.RotateWait}))
	}
	return g, nil
}

// Epoch is this process's random epoch.
func (g *Gateway) Epoch() string { return g.epoch }

// Run polls the files every cfg.Poll until ctx is done.
func (g *Gateway) Run(ctx context.Context) {
	t := time.NewTicker(g.cfg.Poll)
	defer t.Stop()
	defer func() {
		for _, tl := range g.tailers {
			tl.close()
		}
	}()
	for {
		g.PollOnce()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// PollOnce reads every file once and closes due minutes. Run calls it; it
// must not be called concurrently with itself.
func (g *Gateway) PollOnce() {
	now := g.cfg.Now()
	for _, t := range g.tailers {
		t.poll(now, g.ingest)
	}
	g.mu.Lock()
	g.closeDue(g.cfg.Now())
	g.mu.Unlock()
}

// ingest parses and aggregates one line.
func (g *Gateway) ingest(line []byte, reason string) {
	var rec accesslog.Record
	if reason == "" {
		var err error
		rec, err = g.parser.Parse(line)
		if le := (*accesslog.LineError)(nil); errors.As(err, &le) {
			reason = le.Reason
		} else if err != nil {
			reason = "parse"
		}
	}
	now := g.cfg.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if reason == "" && rec.Time.After(now.Add(gatewayMaxFuture)) {
		reason = ReasonFutureTime
	}
	if reason != "" {
		g.bad(reason, line)
		return
	}
	key := bucketKey{minute: rec.Time.Truncate(time.Minute).Unix(), caller: g.caller(rec.Client),
		service: rec.Service, protocol: rec.Protocol}
	b := g.open[key]
	if b == nil {
		if len(g.open) >= g.cfg.MaxOpen {
			g.bad(ReasonTooMany, line)
			return
		}
		b = &openBucket{clients: hyperloglog.New14()}
		g.open[key] = b
	}
	ms := rec.DurationMs()
	b.calls++
	if rec.IsError() {
		b.errors++
	}
	b.sumMs += ms
	b.lat.Add(ms)
	b.clients.Insert([]byte(rec.ClientKey))
	g.lines.Parsed++
}

func (g *Gateway) bad(reason string, line []byte) {
	g.lines.Bad++
	g.lines.BadByReason[reason]++
	if len(line) > lastBadMax {
		line = line[:lastBadMax]
	}
	g.lines.LastBad = reason + ": " + strings.ToValidUTF8(string(line), "\uFFFD")
}

// caller names the client address by the first matching rule. The address
// may carry a port ("$remote_addr:$remote_port") or be a forwarded-for list
// (the first entry is the client).
func (g *Gateway) caller(client string) string {
	if len(g.cfg.Callers) == 0 {
		return "user"
	}
	client, _, _ = strings.Cut(client, ",")
	client = strings.TrimSpace(client)
	a, err := netip.ParseAddr(client)
	if err != nil {
		ap, err := netip.ParseAddrPort(client)
		if err != nil {
			return "user"
		}
		a = ap.Addr()
	}
	a = a.Unmap()
	for _, r := range g.cfg.Callers {
		if r.Prefix.Contains(a) {
			return r.Name
		}
	}
	return "user"
}

// closeDue closes the open buckets whose minute ended more than Lateness
// before now (in a fixed order, so Seq follows minute, caller, service,
// protocol), and drops closed buckets older than Retention or beyond
// MaxHeld. A line for an
// already closed minute opens a fresh bucket that is closed (with its own
// Seq) at the next call: it is neither lost nor merged into a bucket a
// client may already have applied.
func (g *Gateway) closeDue(now time.Time) {
	var due []bucketKey
	for k := range g.open {
		if now.Sub(time.Unix(k.minute, 0)) >= time.Minute+g.cfg.Lateness {
			due = append(due, k)
		}
	}
	slices.SortFunc(due, func(a, b bucketKey) int {
		return cmp.Or(cmp.Compare(a.minute, b.minute), cmp.Compare(a.caller, b.caller),
			cmp.Compare(a.service, b.service), cmp.Compare(a.protocol, b.protocol))
	})
	for _, k := range due {
		b := g.open[k]
		delete(g.open, k)
		lat, err1 := b.lat.MarshalBinary()
		hll, err2 := b.clients.MarshalBinary()
		if err := errors.Join(err1, err2); err != nil {
			g.cfg.Logger.Error("gateway: encoding a bucket", "err", err)
			continue
		}
		g.lastSeq++
		cb := closedBucket{GatewayBucket: api.GatewayBucket{
			Seq: g.lastSeq, Minute: time.Unix(k.minute, 0).UTC(), Caller: k.caller, Service: k.service,
			Protocol: k.protocol, Calls: b.calls, Errors: b.errors, LatencySumMs: b.sumMs, Latency: lat, Clients: hll,
		}, closedAt: now}
		// base64 grows bytes by 4/3; 200 covers the other fields.
		cb.size = 200 + len(k.caller) + len(k.service) + (len(lat)+len(hll))*4/3
		g.closed = append(g.closed, cb)
		g.held += cb.size
	}
	drop := 0
	for drop < len(g.closed) && (now.Sub(g.closed[drop].closedAt) > g.cfg.Retention || g.held > g.cfg.MaxHeld) {
		g.held -= g.closed[drop].size
		drop++
	}
	if drop > 0 {
		g.closed = slices.Delete(g.closed, 0, drop)
	}
}

// Report answers GET /v1/gateway?after=AFTER&epoch=EPOCH. A client that
// names another epoch (an earlier process) is answered as if after were 0;
// no epoch means after is taken as it is.
func (g *Gateway) Report(after uint64, epoch string) *api.GatewayReport {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closeDue(g.cfg.Now())
	if epoch != "" && epoch != g.epoch {
		after = 0
	}
	// Nothing is newer than lastSeq; this also keeps after+1 from wrapping
	// (CheckHealth probes with the largest after to get an empty answer).
	after = min(after, g.lastSeq)
	rep := &api.GatewayReport{SchemaVersion: 1, Node: g.cfg.Node, Epoch: g.epoch, LastSeq: g.lastSeq,
		Oldest: g.lastSeq + 1, Buckets: []api.GatewayBucket{}}
	if len(g.closed) > 0 {
		rep.Oldest = g.closed[0].Seq
	}
	if after+1 < rep.Oldest {
		rep.Gap = rep.Oldest - 1 - after
	}
	i, _ := slices.BinarySearchFunc(g.closed, after+1, func(c closedBucket, seq uint64) int { return cmp.Compare(c.Seq, seq) })
	size := 1024
	for ; i < len(g.closed); i++ {
		c := &g.closed[i]
		if len(rep.Buckets) >= g.cfg.MaxBuckets || (len(rep.Buckets) > 0 && size+c.size > g.cfg.MaxBytes) {
			rep.More = true
			break
		}
		size += c.size
		rep.Buckets = append(rep.Buckets, c.GatewayBucket)
	}
	rep.Lines = g.lines
	rep.Lines.BadByReason = maps.Clone(g.lines.BadByReason)
	if len(rep.Lines.BadByReason) == 0 {
		rep.Lines.BadByReason = nil
	}
	for _, t := range g.tailers {
		rep.Files = append(rep.Files, t.State())
	}
	return rep
}

// ServeGateway mounts GET /v1/gateway (same bearer token as /v1/snapshot)
// on the server's handler. Call before Handler.
func (s *Server) ServeGateway(g *Gateway) { s.gateway = g }

func (s *Server) gatewayReport(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var after uint64
	if a := q.Get("after"); a != "" {
		var err error
		if after, err = strconv.ParseUint(a, 10, 64); err != nil {
			http.Error(w, "after: want a non-negative integer", http.StatusBadRequest)
			return
		}
	}
	body, err := marshal(s.gateway.Report(after, q.Get("epoch")))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Vary", "Accept-Encoding")
	if acceptsGzip(r) {
		body = gzipBytes(body)
		w.Header().Set("Content-Encoding", "gzip")
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Write(body)
}

// Package agent is the servicemap node agent: it reads the TCP tables of
// every network namespace on a node (sock_diag netlink first, /proc as the
// fallback), classifies connections as inbound or outbound, counts
// connections that were born and closed between polls, and keeps the last
// snapshot for the HTTP server in server.go.
package agent

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/livemap/servicemap/pkg/agent/api"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Method selects how TCP tables are read.
type Method string

const (
	// MethodAuto uses netlink sock_diag and falls back to /proc per
	// namespace and family when netlink fails.
	MethodAuto    Method = "auto"
	MethodNetlink Method = api.MethodNetlink // netlink only (no fallback)
	MethodProc    Method = api.MethodProc    // /proc/PID/net/tcp{,6} only
)

// ParseMethod parses "auto", "netlink" or "proc".
func ParseMethod(s string) (Method, error) {
	switch m := Method(s); m {
	case MethodAuto, MethodNetlink, MethodProc:
		return m, nil
	}
	return "", fmt.Errorf("unknown method %q (want auto, netlink or proc)", s)
}

// Config configures an Agent.
type Config struct {
	// ProcRoot is the proc file system to walk (default /proc).
	ProcRoot string
	// Node is reported in snapshots.
	Node string
	// Method is how TCP tables are read (default auto).
	Method Method
	// PollInterval is reported in snapshots and used by Run (default 5s).
	PollInterval time.Duration
	// MaxPIDsPerNamespace bounds Namespace.PIDs (default 5).
	MaxPIDsPerNamespace int
	// BirthsRetention is how long the closed births of each poll are held
	// for clients that fetch less often than the agent polls (default 10m;
	// rounded up to whole polls).
	BirthsRetention time.Duration
	// Logger (default slog.Default()).
	Logger *slog.Logger
}

// Agent polls the node and keeps the last snapshot. Poll must not be called
// concurrently with itself; Last may be called at any time.
type Agent struct {
	cfg Config

	pollMu   sync.Mutex
	prev     map[uint64]*nsPrev
	prevTime time.Time
	seq      uint64
	buf      []byte

	epoch string

	mu     sync.RWMutex
	last   *api.Snapshot
	births []heldPoll // one entry per poll, oldest first, at most keep
	keep   int
}

// heldPoll is what one poll leaves for later fetches: its births, and the
// connections that turned TIME_WAIT in it with the poll that first saw
// each (so a fetch can tell which ones it never had in a snapshot).
type heldPoll struct {
	api.PollBirths // Namespaces: every namespace with births or ended connections
	ended          [][]endedFlow
}

// endedFlow counts connections of one flow that turned TIME_WAIT in a poll
// after being seen in another state since poll first.
type endedFlow struct {
	api.Flow
	first uint64
}

// tuple is a connection's 4-tuple as a flat comparable key (hashes faster
// than a pair of netip.AddrPort).
type tuple [36]byte

func mkTuple(l, r netip.AddrPort) (t tuple) {
	a, b := l.Addr().As16(), r.Addr().As16()
	copy(t[:16], a[:])
	copy(t[16:32], b[:])
	binary.BigEndian.PutUint16(t[32:], l.Port())
	binary.BigEndian.PutUint16(t[34:], r.Port())
	return t
}

type nsPrev struct {
	tuples   map[tuple]seen
	counters api.NSCounters
	ended    []endedFlow // of this poll, for the held poll
}

// seen is what the next poll needs to know of a connection row.
type seen struct {
	first    uint64 // the poll that first showed the 4-tuple
	timeWait bool
}

// New returns an Agent with defaults filled in.
func New(cfg Config) *Agent {
	if cfg.ProcRoot == "" {
		cfg.ProcRoot = "/proc"
	}
	cfg.ProcRoot = strings.TrimRight(cfg.ProcRoot, "/")
	if cfg.ProcRoot == "" {
		cfg.ProcRoot = "/"
	}
	if cfg.Method == "" {
		cfg.Method = MethodAuto
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 5 * time.Second
	}
	if cfg.MaxPIDsPerNamespace <= 0 {
		cfg.MaxPIDsPerNamespace = 5
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.BirthsRetention <= 0 {
		cfg.BirthsRetention = 10 * time.Minute
	}
	keep := int((cfg.BirthsRetention + cfg.PollInterval - 1) / cfg.PollInterval)
	return &Agent{cfg: cfg, prev: map[uint64]*nsPrev{}, epoch: newEpoch(), keep: max(keep, 1)}
}

// newEpoch is random, so two runs of the agent never share one (a restart
// resets Seq).
func newEpoch() string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	return hex.EncodeToString(b[:])
}

// Epoch identifies this agent run (see api.Snapshot.Epoch).
func (a *Agent) Epoch() string { return a.epoch }

// Births returns the held polls with after < Seq <= through that had
// births, or connections first seen after poll sampled that turned
// TIME_WAIT (ClosedUnsampled), oldest first, and the oldest poll still held
// (0 before the first poll). The caller must not modify them.
func (a *Agent) Births(after, through, sampled uint64) ([]api.PollBirths, uint64) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	if len(a.births) == 0 {
		return nil, 0
	}
	var out []api.PollBirths
	for _, p := range a.births {
		if p.Seq <= after || p.Seq > through {
			continue
		}
		q := p.PollBirths
		q.Namespaces = nil
		for i, ns := range p.Namespaces {
			ns.ClosedUnsampled = unsampled(p.ended[i], sampled)
			if len(ns.Closed) > 0 || len(ns.ClosedUnsampled) > 0 {
				q.Namespaces = append(q.Namespaces, ns)
			}
		}
		if len(q.Namespaces) > 0 {
			out = append(out, q)
		}
	}
	return out, a.births[0].Seq
}

// unsampled sums, per flow, the ended connections first seen after sampled.
func unsampled(ended []endedFlow, sampled uint64) []api.Flow {
	var out []api.Flow
	for _, e := range ended { // sorted by flow, so one flow's entries are adjacent
		if e.first <= sampled {
			continue
		}
		if n := len(out); n > 0 && sameFlow(out[n-1], e.Flow) {
			out[n-1].ClosedSinceLastPoll += e.ClosedSinceLastPoll
			continue
		}
		out = append(out, e.Flow)
	}
	return out
}

func sameFlow(x, y api.Flow) bool {
	x.ClosedSinceLastPoll, y.ClosedSinceLastPoll = 0, 0
	return x == y
}

// Config returns the effective configuration.
func (a *Agent) Config() Config { return a.cfg }

// Last returns the last snapshot (nil before the first poll). The caller
// must not modify it.
func (a *Agent) Last() *api.Snapshot {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.last
}

// Run polls immediately and then every PollInterval until ctx is done.
func (a *Agent) Run(ctx context.Context) {
	t := time.NewTicker(a.cfg.PollInterval)
	defer t.Stop()
	lastReasons := ""
	for {
		s := a.Poll()
		a.cfg.Logger.Debug("poll", "seq", s.Seq, "namespaces", s.Cost.NamespacesRead,
			"sockets", s.Cost.SocketsSeen, "wall", s.Cost.WallSeconds, "errors", s.Cost.Errors)
		// Warn when the set of error reasons changes, not on every poll.
		if r := reasons(s.Errors); r != lastReasons {
			if r != "" {
				a.cfg.Logger.Warn("poll errors", "seq", s.Seq, "errors", s.Errors)
			} else {
				a.cfg.Logger.Info("poll errors cleared", "seq", s.Seq)
			}
			lastReasons = r
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func reasons(errs map[string]int) string {
	keys := make([]string, 0, len(errs))
	for k := range errs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return strings.Join(keys, ",")
}

// Poll reads every network namespace once, stores the snapshot as the last
// one and returns it.
func (a *Agent) Poll() *api.Snapshot {
	a.pollMu.Lock()
	defer a.pollMu.Unlock()

	start := time.Now()
	ru0 := rusage()
	errs := errCounts{}

	entries, scanned := walkNamespaces(a.cfg.ProcRoot, errs)
	var hostIno uint64
	var st syscall.Stat_t
	if syscall.Stat(a.cfg.ProcRoot+"/1/ns/net", &st) == nil {
		hostIno = st.Ino
	}
	inodes := make([]uint64, 0, len(entries))
	for ino := range entries {
		inodes = append(inodes, ino)
	}
	slices.Sort(inodes)

	snap := &api.Snapshot{
		SchemaVersion: api.SchemaVersion,
		Epoch:         a.epoch,
		Node:          a.cfg.Node,
		TakenAt:       start.UTC(),
		PollSeconds:   a.cfg.PollInterval.Seconds(),
		Namespaces:    make([]api.Namespace, 0, len(inodes)),
	}
	if !a.prevTime.IsZero() {
		snap.SincePreviousSeconds = start.Sub(a.prevTime).Seconds()
	}
	methods := map[string]int{}
	next := make(map[uint64]*nsPrev, len(inodes))
	sockets := 0
	for _, ino := range inodes {
		ns, cur, ok := a.readNamespace(entries[ino], errs)
		if !ok {
			continue
		}
		ns.HostNetwork = ino == hostIno
		sockets += len(ns.Listeners) + len(ns.Connections)
		methods[ns.Method]++
		next[ino] = cur
		snap.Namespaces = append(snap.Namespaces, ns)
	}
	a.prev = next
	a.prevTime = start
	a.seq++
	snap.Seq = a.seq

	switch {
	case methods[api.MethodProc] == 0:
		snap.Method = api.MethodNetlink
	case methods[api.MethodNetlink] == 0:
		snap.Method = api.MethodProc
	default:
		snap.Method = api.MethodMixed
	}
	total := 0
	for _, n := range errs {
		total += n
	}
	if total > 0 {
		snap.Errors = errs
	}
	ru1 := rusage()
	snap.Cost = api.Cost{
		WallSeconds:      time.Since(start).Seconds(),
		CPUUserSeconds:   ru1.user - ru0.user,
		CPUSystemSeconds: ru1.sys - ru0.sys,
		PIDsScanned:      scanned,
		NamespacesRead:   len(snap.Namespaces),
		SocketsSeen:      sockets,
		Methods:          methods,
		Errors:           total,
	}
	births := heldPoll{PollBirths: api.PollBirths{Seq: snap.Seq, TakenAt: snap.TakenAt, SincePreviousSeconds: snap.SincePreviousSeconds}}
	for _, ns := range snap.Namespaces {
		ended := next[ns.Inode].ended
		if len(ns.Closed) > 0 || len(ended) > 0 {
			births.Namespaces = append(births.Namespaces, api.NamespaceBirths{
				Inode: ns.Inode, PodUID: ns.PodUID, HostNetwork: ns.HostNetwork, IPs: ns.IPs, Closed: ns.Closed,
			})
			births.ended = append(births.ended, ended)
		}
		next[ns.Inode].ended = nil
	}
	a.mu.Lock()
	a.last = snap
	if len(a.births) == a.keep {
		a.births[0] = heldPoll{} // let the dropped poll's slices go
		a.births = a.births[1:]
	}
	a.births = append(a.births, births)
	a.mu.Unlock()
	return snap
}

// openNS opens the namespace of the first PID of e that still has it,
// checking the inode so a reused PID is not mistaken for the namespace.
func (a *Agent) openNS(e *nsEntry, errs errCounts) (*os.File, int, bool) {
	for _, pid := range e.pids {
		f, err := os.Open(fmt.Sprintf("%s/%d/ns/net", a.cfg.ProcRoot, pid))
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				errs.add(ErrNSOpen)
			}
			continue
		}
		var st syscall.Stat_t
		if err := syscall.Fstat(int(f.Fd()), &st); err != nil || st.Ino != e.inode {
			errs.add(ErrNSChanged)
			f.Close()
			continue
		}
		return f, pid, true
	}
	return nil, 0, false
}

// readNamespace reads one namespace: TCP tables, addresses, counters and
// pod identity. It returns false if no PID of the namespace could be opened.
func (a *Agent) readNamespace(e *nsEntry, errs errCounts) (api.Namespace, *nsPrev, bool) {
	f, pid, ok := a.openNS(e, errs)
	if !ok {
		return api.Namespace{}, nil, false
	}
	defer f.Close()
	nsFD := int(f.Fd())

	ns := api.Namespace{Inode: e.inode, PIDCount: len(e.pids)}
	ns.PIDs = slices.Clone(e.pids[:min(len(e.pids), a.cfg.MaxPIDsPerNamespace)])
	for _, p := range ns.PIDs {
		data, err := readFileInto(fmt.Sprintf("%s/%d/cgroup", a.cfg.ProcRoot, p), a.buf)
		a.buf = data
		if err != nil {
			continue
		}
		if uid, cid := parseCgroup(data); uid != "" || cid != "" {
			ns.PodUID, ns.ContainerID = uid, cid
			break
		}
	}

	rows, method := a.readTCP(nsFD, pid, errs)
	ns.Method = method
	ns.IPs = listIPs(nsFD, errs)
	ns.Counters = a.readCounters(pid, errs)

	prev := a.prev[e.inode]
	ns.FirstSeen = prev == nil
	cur := &nsPrev{tuples: make(map[tuple]seen, len(rows)), counters: ns.Counters}
	cur.counters.Delta = nil
	classify(&ns, rows, prev, cur, a.seq+1)
	if prev != nil && prev.counters.Valid && ns.Counters.Valid {
		ns.Counters.Delta = counterDelta(prev.counters, ns.Counters, ns.NewConnections)
	}
	return ns, cur, true
}

// readTCP reads the IPv4 and IPv6 TCP tables of the namespace.
func (a *Agent) readTCP(nsFD, pid int, errs errCounts) ([]sockRow, string) {
	rows := make([]sockRow, 0, 64)
	emit := func(r sockRow) { rows = append(rows, r) }
	method := api.MethodNetlink
	readProc := func(v6 bool) {
		method = api.MethodProc
		name := "tcp"
		if v6 {
			name = "tcp6"
		}
		data, err := readFileInto(fmt.Sprintf("%s/%d/net/%s", a.cfg.ProcRoot, pid, name), a.buf)
		a.buf = data
		if err != nil {
			if !(v6 && errors.Is(err, os.ErrNotExist)) { // no IPv6 in this kernel
				errs.add(ErrProcRead)
			}
			return
		}
		parseProcNetTCP(data, v6, errs, emit)
	}
	if a.cfg.Method == MethodProc {
		readProc(false)
		readProc(true)
		return rows, method
	}
	c, err := dialDiag(nsFD)
	if err != nil {
		errs.add(ErrNetlinkDial)
		if a.cfg.Method == MethodAuto {
			errs.add(ErrNetlinkFailed)
			readProc(false)
			readProc(true)
		}
		return rows, method
	}
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		if c == nil { // the previous dump failed: do not read its leftovers
			if c, err = dialDiag(nsFD); err != nil {
				c = nil
				errs.add(ErrNetlinkDial)
				if a.cfg.Method == MethodAuto {
					errs.add(ErrNetlinkFailed)
					readProc(fam == unix.AF_INET6)
				}
				continue
			}
		}
		n, err := dumpTCP(c, fam, errs, emit)
		if err != nil {
			c.Close()
			c = nil
		}
		if err != nil && n == 0 && a.cfg.Method == MethodAuto {
			if fam == unix.AF_INET6 && errors.Is(err, unix.ENOENT) {
				continue // IPv6 not available: nothing to read
			}
			errs.add(ErrNetlinkFailed)
			readProc(fam == unix.AF_INET6)
		}
	}
	return rows, method
}

// listIPs lists the namespace's interface addresses by rtnetlink, without
// loopback and IPv6 link-local addresses, sorted.
func listIPs(nsFD int, errs errCounts) []string {
	h, err := netlink.NewHandleAt(netns.NsHandle(nsFD), unix.NETLINK_ROUTE)
	if err != nil {
		errs.add(ErrAddrList)
		return []string{}
	}
	defer h.Close()
	addrs, err := h.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		errs.add(ErrAddrList)
		return []string{}
	}
	ips := make([]netip.Addr, 0, len(addrs))
	for _, ad := range addrs {
		if ad.IPNet == nil {
			continue
		}
		ip, ok := netip.AddrFromSlice(ad.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		if ip.IsLoopback() || ip.IsLinkLocalUnicast() {
			continue
		}
		ips = append(ips, ip)
	}
	slices.SortFunc(ips, netip.Addr.Compare)
	ips = slices.Compact(ips)
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = ip.String()
	}
	return out
}

// readCounters reads the Tcp: MIB of /proc/PID/net/snmp and the TcpExt:
// listen counters of /proc/PID/net/netstat (both per network namespace).
func (a *Agent) readCounters(pid int, errs errCounts) api.NSCounters {
	var c api.NSCounters
	data, err := readFileInto(fmt.Sprintf("%s/%d/net/snmp", a.cfg.ProcRoot, pid), a.buf)
	a.buf = data
	if err != nil {
		errs.add(ErrCountersRead)
		return c
	}
	found := 0
	parseMIB(data, "Tcp:", errs, func(name string, v int64) {
		u := uint64(max(v, 0))
		switch name {
		case "ActiveOpens":
			c.ActiveOpens = u
		case "PassiveOpens":
			c.PassiveOpens = u
		case "AttemptFails":
			c.AttemptFails = u
		case "EstabResets":
			c.EstabResets = u
		case "CurrEstab":
			c.CurrEstab = u
		default:
			return
		}
		found++
	})
	c.Valid = found > 0
	data, err = readFileInto(fmt.Sprintf("%s/%d/net/netstat", a.cfg.ProcRoot, pid), a.buf)
	a.buf = data
	if err != nil {
		errs.add(ErrCountersRead)
		return c
	}
	parseMIB(data, "TcpExt:", errs, func(name string, v int64) {
		switch name {
		case "ListenOverflows":
			c.ListenOverflows = uint64(max(v, 0))
		case "ListenDrops":
			c.ListenDrops = uint64(max(v, 0))
		}
	})
	return c
}

func sub(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}

func counterDelta(prev, cur api.NSCounters, newConns int) *api.CounterDelta {
	if cur.ActiveOpens < prev.ActiveOpens || cur.PassiveOpens < prev.PassiveOpens {
		return nil // counters went back: not the same namespace
	}
	d := &api.CounterDelta{
		ActiveOpens:     cur.ActiveOpens - prev.ActiveOpens,
		PassiveOpens:    cur.PassiveOpens - prev.PassiveOpens,
		AttemptFails:    sub(cur.AttemptFails, prev.AttemptFails),
		EstabResets:     sub(cur.EstabResets, prev.EstabResets),
		ListenOverflows: sub(cur.ListenOverflows, prev.ListenOverflows),
		ListenDrops:     sub(cur.ListenDrops, prev.ListenDrops),
	}
	d.UnobservedOpens = sub(d.ActiveOpens+d.PassiveOpens, uint64(newConns))
	return d
}

// classify fills Listeners, Connections, Closed and NewConnections of ns
// from the raw rows of poll seq, records the 4-tuples in cur for the next
// poll, and in cur.ended the connections that turned TIME_WAIT since the
// previous poll after being seen in another state.
func classify(ns *api.Namespace, rows []sockRow, prev, cur *nsPrev, seq uint64) {
	listen := make(map[netip.AddrPort]struct{})
	listeners := make([]sockRow, 0, 8)
	conns := make([]sockRow, 0, len(rows))
	for _, r := range rows {
		switch r.State {
		case tcpListen:
			listen[r.Local] = struct{}{}
			listeners = append(listeners, r)
		case tcpClose:
		default:
			conns = append(conns, r)
		}
	}
	cmpRow := func(x, y sockRow) int {
		if c := x.Local.Compare(y.Local); c != 0 {
			return c
		}
		if c := x.Remote.Compare(y.Remote); c != 0 {
			return c
		}
		return int(x.State) - int(y.State)
	}
	slices.SortFunc(listeners, cmpRow)
	slices.SortFunc(conns, cmpRow)

	ns.Listeners = make([]api.Listener, 0, len(listeners))
	for _, r := range listeners {
		ns.Listeners = append(ns.Listeners, api.Listener{
			Endpoint: endpoint(r.Local), AcceptQueue: r.RQueue, Backlog: r.WQueue,
		})
	}
	var closed map[api.Flow]int
	var ended map[endedFlow]int
	flow := func(r sockRow, dir string) api.Flow {
		f := api.Flow{Direction: dir, Local: endpoint(r.Local), Remote: endpoint(r.Remote)}
		if dir == api.Outbound {
			f.Local.Port = 0
		} else {
			f.Remote.Port = 0
		}
		return f
	}
	ns.Connections = make([]api.Conn, 0, len(conns))
	for _, r := range conns {
		dir := api.Outbound
		if isInbound(listen, r.Local) {
			dir = api.Inbound
		}
		t := mkTuple(r.Local, r.Remote)
		tw := r.State == tcpTimeWait
		before, wasSeen := seen{}, false
		if prev != nil {
			before, wasSeen = prev.tuples[t]
		}
		isNew := prev != nil && !wasSeen
		first := seq
		if wasSeen {
			first = before.first
		}
		cur.tuples[t] = seen{first: first, timeWait: tw}
		switch {
		case isNew && tw:
			if closed == nil {
				closed = map[api.Flow]int{}
			}
			closed[flow(r, dir)]++
		case wasSeen && tw && !before.timeWait:
			if ended == nil {
				ended = map[endedFlow]int{}
			}
			ended[endedFlow{Flow: flow(r, dir), first: first}]++
		}
		if isNew {
			ns.NewConnections++
		}
		ns.Connections = append(ns.Connections, api.Conn{
			Local:     endpoint(r.Local),
			Remote:    endpoint(r.Remote),
			State:     StateName(r.State),
			Direction: dir,
			New:       isNew,
		})
	}
	for f, n := range closed {
		f.ClosedSinceLastPoll = n
		ns.Closed = append(ns.Closed, f)
	}
	slices.SortFunc(ns.Closed, func(x, y api.Flow) int {
		return strings.Compare(flowKey(x), flowKey(y))
	})
	cur.ended = nil
	for e, n := range ended {
		e.ClosedSinceLastPoll = n
		cur.ended = append(cur.ended, e)
	}
	slices.SortFunc(cur.ended, func(x, y endedFlow) int {
		return cmp.Or(strings.Compare(flowKey(x.Flow), flowKey(y.Flow)), cmp.Compare(x.first, y.first))
	})
}

func flowKey(f api.Flow) string {
	return fmt.Sprintf("%s|%s|%05d|%s|%05d", f.Direction, f.Local.IP, f.Local.Port, f.Remote.IP, f.Remote.Port)
}

var (
	wild4 = netip.IPv4Unspecified()
	wild6 = netip.IPv6Unspecified()
)

// isInbound reports whether local is served by a LISTEN socket of the same
// namespace: on local's exact address, on 0.0.0.0 (IPv4), or on [::]
// (which also accepts IPv4 on a dual-stack socket).
func isInbound(listen map[netip.AddrPort]struct{}, local netip.AddrPort) bool {
	if len(listen) == 0 {
		return false
	}
	if _, ok := listen[local]; ok {
		return true
	}
	p := local.Port()
	if local.Addr().Is4() {
		if _, ok := listen[netip.AddrPortFrom(wild4, p)]; ok {
			return true
		}
	}
	_, ok := listen[netip.AddrPortFrom(wild6, p)]
	return ok
}

func endpoint(ap netip.AddrPort) api.Endpoint {
	return api.Endpoint{IP: ap.Addr().String(), Port: ap.Port()}
}

type cpuTimes struct{ user, sys float64 }

func rusage() cpuTimes {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return cpuTimes{}
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return cpuTimes{tv(ru.Utime), tv(ru.Stime)}
}

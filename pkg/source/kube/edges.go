package kube

import (
	"net/netip"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/livemap/servicemap/pkg/agent/api"
	"github.com/livemap/servicemap/pkg/model"
	"github.com/livemap/servicemap/pkg/store"
)

// ConvertStats says what became of the rows of a set of snapshots.
type ConvertStats struct {
	Counted         int // connection rows counted on an edge
	ClosedBirths    int // connections counted from the births' closed flows
	ClosedUnsampled int // closed connections no fetched snapshot showed (closedUnsampled)
	BirthPolls      int // agent polls whose births were applied
	Duplicates      int // rows already counted from the other end
	ClosingSides    int // live rows of connections whose other end is in TIME_WAIT (counted there)
	Noise           int // loopback, node-to-pod (kubelet probes, SNAT), self-calls
	TimeWait        int // TIME_WAIT rows skipped (only closed births count them)
	UnknownLocal    int // namespaces that are no known pod (host network included)
	EdgesPerPoll    int // distinct (edge, poll) pairs recorded
	ResolvedRemote  int
}

// connKey is the server side of one connection after DNAT: the client's
// address and port and the port the server listens on. The client sees
// ClusterIP:port and the server podIP:targetPort; both map to this key.
type connKey struct {
	client     netip.AddrPort
	serverPort uint16
}

type edgeAt struct {
	edge model.EdgeKey
	at   time.Time
}

// AddSnapshots turns agent snapshots into network evidence in b:
//
//   - an OUTBOUND row of a pod makes the edge pod's service → resolved remote;
//   - an INBOUND row counts only when no outbound row of the same connection
//     was seen (the client is outside the agents' view, e.g. an external
//     CIDR, or on a node without an agent);
//   - both ends of one connection are counted once, keyed by the server-side
//     (client ip:port, server port) after mapping a ClusterIP port to its
//     targetPort;
//   - TIME_WAIT rows are skipped; the snapshot's Births (every agent poll
//     since the previous fetch) count connections born and closed between
//     two agent polls, and connections closed that were seen only by agent
//     polls after the last fetch (closedUnsampled), each at its poll's time;
//   - a connection one end of which is in TIME_WAIT is closed: the other
//     end's row (CLOSE_WAIT, LAST_ACK, FIN_WAIT*) is not counted as live, so
//     a connection counted as a birth from its TIME_WAIT end is not counted
//     again from the other end;
//   - loopback, self-calls and connections from a node IP into a pod
//     (kubelet probes, SNATed traffic) are ignored.
//
// Each snapshot records AddConnections(edge, snapshot.TakenAt, n) with n the
// connections seen on the edge in that poll, and each poll of its Births
// AddConnections(edge, poll.TakenAt, births).
func AddSnapshots(b *store.Batch, x *Index, snaps []*api.Snapshot) ConvertStats {
	var st ConvertStats
	rows := 0
	for _, s := range snaps {
		for i := range s.Namespaces {
			rows += len(s.Namespaces[i].Connections)
		}
	}
	// Sized once: growing these maps row by row was most of a large
	// refresh's allocations (BenchmarkRefresh, docs/BENCHMARKS.md).
	seen := make(map[connKey]bool, rows)
	counts := make(map[edgeAt]uint64, rows/2)
	infos := make(map[model.EdgeKey]model.EdgeInfo, rows/2)
	nodes := map[string]model.NodeInfo{}
	add := func(e model.EdgeKey, at time.Time, n uint64, info model.EdgeInfo) {
		counts[edgeAt{e, at}] += n
		cur := infos[e]
		cur.Merge(info)
		infos[e] = cur
	}
	remember := func(t Target) {
		if t.Kind != model.KindService {
			nodes[t.ID] = model.NodeInfo{ID: t.ID, Kind: t.Kind}
		}
	}
	type local struct {
		ns  *api.Namespace
		pod *corev1.Pod
		id  string
		at  time.Time
	}
	var locals []local
	type birthNS struct {
		ns  *api.NamespaceBirths
		pod *corev1.Pod
		id  string
		at  time.Time
	}
	var births []birthNS
	for _, s := range snaps {
		for i := range s.Namespaces {
			ns := &s.Namespaces[i]
			pod := x.localPod(ns.HostNetwork, ns.PodUID, ns.IPs)
			if pod == nil {
				st.UnknownLocal++
				continue
			}
			locals = append(locals, local{ns, pod, x.PodNodeID(pod), s.TakenAt})
		}
		if s.Births == nil {
			continue
		}
		for _, p := range s.Births.Polls {
			st.BirthPolls++
			for i := range p.Namespaces {
				ns := &p.Namespaces[i]
				pod := x.localPod(ns.HostNetwork, ns.PodUID, ns.IPs)
				if pod == nil {
					st.UnknownLocal++
					continue
				}
				births = append(births, birthNS{ns, pod, x.PodNodeID(pod), p.TakenAt})
			}
		}
	}
	// The server-side keys of connections one end of which is in TIME_WAIT:
	// such a connection is over, and was counted (as a birth, or live in an
	// earlier poll) from that end.
	closing := map[connKey]bool{}
	for _, l := range locals {
		for _, c := range l.ns.Connections {
			if c.State != "TIME_WAIT" {
				continue
			}
			var k connKey
			var ok bool
			if c.Direction == api.Outbound {
				k, _, ok = outboundKey(c, x)
			} else {
				k, ok = inboundKey(c)
			}
			if ok {
				closing[k] = true
			}
		}
	}
	// firstSighting is true once per live connection: not when one of its
	// ends is in TIME_WAIT (it is over, counted from that end), nor when its
	// other end was already counted.
	firstSighting := func(k connKey) bool {
		switch {
		case closing[k]:
			st.ClosingSides++
		case seen[k]:
			st.Duplicates++
		default:
			seen[k] = true
			return true
		}
		return false
	}
	// Pass 1: outbound rows.
	for _, l := range locals {
		for _, c := range l.ns.Connections {
			if c.Direction != api.Outbound {
				continue
			}
			if c.State == "TIME_WAIT" {
				st.TimeWait++
				continue
			}
			k, t, ok := outboundKey(c, x)
			if !ok || t.ID == l.id {
				st.Noise++
				continue
			}
			if !firstSighting(k) {
				continue
			}
			st.Counted++
			st.ResolvedRemote++
			remember(t)
			add(model.EdgeKey{Source: l.id, Target: t.ID}, l.at, 1, x.EdgeInfoFor(t))
		}
	}
	// Pass 2: inbound rows complete what no client-side agent reported.
	serverInfo := func(pod *corev1.Pod, id string, port uint16) model.EdgeInfo {
		t := Target{ID: id, Kind: model.KindService, Namespace: pod.Namespace, Pod: pod}
		for _, s := range x.ServicesOfPod(pod) {
			if sp := x.portByTarget(s, pod, port); sp != nil {
				t.Service, t.Port = s, sp
				break
			}
		}
		return x.EdgeInfoFor(t)
	}
	for _, l := range locals {
		for _, c := range l.ns.Connections {
			if c.Direction != api.Inbound {
				continue
			}
			if c.State == "TIME_WAIT" {
				st.TimeWait++
				continue
			}
			rip, ok := inboundClient(c.Remote.IP, x, &st)
			if !ok {
				continue
			}
			k := connKey{netip.AddrPortFrom(rip, c.Remote.Port), c.Local.Port}
			if !firstSighting(k) {
				continue
			}
			client, ok := x.Resolve(rip, c.Remote.Port)
			if !ok || client.ID == l.id {
				st.Noise++
				continue
			}
			st.Counted++
			remember(client)
			add(model.EdgeKey{Source: client.ID, Target: l.id}, l.at, 1, serverInfo(l.pod, l.id, c.Local.Port))
		}
	}
	// Closed connections (born and closed between two agent polls, or seen
	// only by polls no fetch took), each at its poll's time. They carry no
	// ports to dedupe on; the closing set above keeps the other end's rows
	// from counting them again.
	for _, l := range births {
		for i, flows := range [][]api.Flow{l.ns.Closed, l.ns.ClosedUnsampled} {
			for _, f := range flows {
				n := f.ClosedSinceLastPoll
				if n <= 0 {
					continue
				}
				var edge model.EdgeKey
				var info model.EdgeInfo
				switch f.Direction {
				case api.Outbound:
					rip, err := netip.ParseAddr(f.Remote.IP)
					if err != nil {
						continue
					}
					t, ok := x.Resolve(rip, f.Remote.Port)
					if !ok || t.ID == l.id {
						st.Noise++
						continue
					}
					remember(t)
					edge, info = model.EdgeKey{Source: l.id, Target: t.ID}, x.EdgeInfoFor(t)
				case api.Inbound:
					rip, ok := inboundClient(f.Remote.IP, x, &st)
					if !ok {
						continue
					}
					client, ok := x.Resolve(rip, 0)
					if !ok || client.ID == l.id {
						st.Noise++
						continue
					}
					remember(client)
					edge, info = model.EdgeKey{Source: client.ID, Target: l.id}, serverInfo(l.pod, l.id, f.Local.Port)
				default:
					continue
				}
				if i == 0 {
					st.ClosedBirths += n
				} else {
					st.ClosedUnsampled += n
				}
				add(edge, l.at, uint64(n), info)
			}
		}
	}
	for k, n := range counts {
		b.AddConnections(k.edge, k.at, n)
	}
	for e, info := range infos {
		b.AddEdgeInfo(e, info)
	}
	for _, n := range nodes {
		b.AddNode(n)
	}
	st.EdgesPerPoll = len(counts)
	return st
}

// localPod identifies the pod of a network namespace: by the pod UID the
// agent read from the cgroup, else by its addresses. The host network
// namespace is no pod.
func (x *Index) localPod(hostNetwork bool, podUID string, ips []string) *corev1.Pod {
	if hostNetwork {
		return nil
	}
	if podUID != "" {
		if p := x.PodByUID(podUID); p != nil && !p.Spec.HostNetwork {
			return p
		}
	}
	for _, s := range ips {
		if ip, err := netip.ParseAddr(s); err == nil {
			if p := x.PodByIP(ip); p != nil {
				return p
			}
		}
	}
	return nil
}

// inboundClient parses the client address of an inbound row. Unparsable rows
// are skipped; loopback and node addresses (kubelet probes, node-to-pod
// traffic) are counted as noise.
func inboundClient(ip string, x *Index, st *ConvertStats) (netip.Addr, bool) {
	rip, err := netip.ParseAddr(ip)
	if err != nil {
		return netip.Addr{}, false
	}
	rip = rip.Unmap()
	if rip.IsLoopback() || x.IsNode(rip) {
		st.Noise++
		return netip.Addr{}, false
	}
	return rip, true
}

// outboundKey is the server-side key of an outbound row and the resolved
// remote; false if an address does not parse or the remote is no evidence.
func outboundKey(c api.Conn, x *Index) (connKey, Target, bool) {
	lip, lerr := netip.ParseAddr(c.Local.IP)
	rip, rerr := netip.ParseAddr(c.Remote.IP)
	if lerr != nil || rerr != nil {
		return connKey{}, Target{}, false
	}
	t, ok := x.Resolve(rip, c.Remote.Port)
	if !ok {
		return connKey{}, Target{}, false
	}
	return connKey{netip.AddrPortFrom(lip.Unmap(), c.Local.Port), t.ServerPort}, t, true
}

// inboundKey is the server-side key of an inbound row.
func inboundKey(c api.Conn) (connKey, bool) {
	rip, err := netip.ParseAddr(c.Remote.IP)
	if err != nil {
		return connKey{}, false
	}
	return connKey{netip.AddrPortFrom(rip.Unmap(), c.Remote.Port), c.Local.Port}, true
}

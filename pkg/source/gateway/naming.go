// Package gateway is the edge evidence: API gateway / load balancer access
// logs, which external callers hit which entry services. It reads them two
// ways — closed one-minute aggregates from node agents (GET /v1/gateway) and
// rows of a SQL table next to the traces — and records calls, errors,
// latency, protocol and a HyperLogLog of client keys per (edge, minute) with
// source gateway. docs/gateway.md describes the flow.
package gateway

import (
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/livemap/servicemap/pkg/config"
	"github.com/livemap/servicemap/pkg/model"
)

// ServiceID maps what a gateway names as its upstream to the node id traces
// and Kubernetes use for the same service (docs/kubernetes.md "Node ids"),
// without access to the cluster: a URL's scheme and path and a ":port" are
// dropped, and a Kubernetes DNS name "name.namespace.svc[.cluster-domain]"
// becomes the Service's name. Of a comma-separated list (nginx's
// $upstream_addr after a retry) the last, the one that answered, is taken.
// Anything else (a plain name, an IP, an external host) is kept as written.
func ServiceID(raw string) string { return Names{}.Node(raw) }

// Resolver knows the cluster: the Kubernetes source's index (the plugin
// wires it when Kubernetes is enabled), so a gateway upstream lands on the
// exact node the network evidence uses.
type Resolver interface {
	// ServiceNode is the node id of Service namespace/name (its annotation,
	// label or name); false if there is no such Service.
	ServiceNode(namespace, name string) (id string, ok bool)
	// AddrNode is the node id of the service behind ip:port (a ClusterIP or
	// pod IP); false if the address is not a service of the cluster.
	AddrNode(ip netip.Addr, port uint16) (id string, ok bool)
}

// Names turns upstream names into node ids, with the cluster's help when a
// Resolver is set.
type Names struct {
	Resolver Resolver // nil: names only (ServiceID's rules)
}

// Node is the node id of a gateway upstream.
func (n Names) Node(raw string) string {
	host, port := splitUpstream(raw)
	if ip, err := netip.ParseAddr(host); err == nil {
		if n.Resolver != nil {
			if id, ok := n.Resolver.AddrNode(ip.Unmap(), port); ok {
				return id
			}
		}
		return ip.Unmap().String()
	}
	// name.namespace.svc, name.namespace.svc.cluster.local (any cluster domain)
	if parts := strings.Split(host, "."); len(parts) >= 3 && strings.EqualFold(parts[2], "svc") && parts[0] != "" && parts[1] != "" {
		if n.Resolver != nil {
			if id, ok := n.Resolver.ServiceNode(parts[1], parts[0]); ok {
				return id
			}
		}
		return parts[0]
	}
	// name.namespace, the short form pods resolve through their search
	// path: only the cluster can tell it from an outside host name.
	if parts := strings.Split(host, "."); len(parts) == 2 && n.Resolver != nil {
		if id, ok := n.Resolver.ServiceNode(parts[1], parts[0]); ok {
			return id
		}
	}
	return host
}

// splitUpstream strips a URL's scheme and path and splits off the port.
func splitUpstream(raw string) (host string, port uint16) {
	s := raw
	if i := strings.LastIndexByte(s, ','); i >= 0 {
		s = s[i+1:]
	}
	s = strings.TrimSpace(s)
	if i := strings.Index(s, "://"); i >= 0 {
		s = s[i+3:]
	}
	if i := strings.IndexAny(s, "/?#"); i >= 0 {
		s = s[:i]
	}
	if h, p, err := net.SplitHostPort(s); err == nil {
		s = h
		if v, err := strconv.ParseUint(p, 10, 16); err == nil {
			port = uint16(v)
		}
	}
	return strings.TrimSuffix(strings.Trim(s, "[]"), "."), port
}

// IsError is the gateway's error rule: a server-side failure. HTTP status
// 500 and above, or a gRPC status other than 0 (OK) when the row has one.
// 4xx are the client's fault and are not errors of the service.
func IsError(status int, grpcStatus *int) bool {
	return status >= 500 || (grpcStatus != nil && *grpcStatus != 0)
}

// Callers names the caller of a request that does not say who it is, by the
// client's address: the first CIDR rule containing it, else the anonymous
// user node.
type Callers struct {
	rules []callerRule
}

type callerRule struct {
	name   string
	prefix netip.Prefix
}

// NewCallers compiles validated CIDR rules (config has checked them).
func NewCallers(rules []config.ExternalCIDR) *Callers {
	c := &Callers{}
	for _, r := range rules {
		if p, err := netip.ParsePrefix(r.CIDR); err == nil {
			c.rules = append(c.rules, callerRule{r.Name, p.Masked()})
		}
	}
	return c
}

// Caller returns the caller node id and kind for a row: the named caller
// when given, else the CIDR rule matching the client address, else the user
// node.
func (c *Callers) Caller(named, clientAddr string) (string, model.NodeKind) {
	if named = strings.TrimSpace(named); named != "" {
		return CallerNode(named)
	}
	if ip, ok := parseAddr(clientAddr); ok {
		for _, r := range c.rules {
			if r.prefix.Contains(ip) {
				return r.name, model.KindExternal
			}
		}
	}
	return model.UserNodeID, model.KindUser
}

// CallerNode is the node of a named caller: "user" is the user node, any
// other name an external node.
func CallerNode(name string) (string, model.NodeKind) {
	if name == model.UserNodeID {
		return model.UserNodeID, model.KindUser
	}
	return name, model.KindExternal
}

// parseAddr reads "ip", "ip:port" or "[ip]:port".
func parseAddr(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	if ip, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return ip.Unmap(), true
	}
	return netip.Addr{}, false
}

// protocolName is the edge protocol as the other sources spell it.
func protocolName(p string) string {
	switch strings.ToLower(strings.TrimSpace(p)) {
	case "grpc":
		return "gRPC"
	case "http", "http/1.0", "http/1.1", "http/2", "http/2.0", "h2", "h2c":
		return "HTTP"
	case "https":
		return "HTTPS"
	case "":
		return ""
	}
	return p
}

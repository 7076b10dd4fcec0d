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
	"strings"

	"github.com/livemap/servicemap/pkg/config"
	"github.com/livemap/servicemap/pkg/model"
)

// ServiceID maps what a gateway names as its upstream to the node id traces
// and Kubernetes use for the same service (docs/kubernetes.md "Node ids"):
// a URL's scheme and path and a ":port" are dropped, and a Kubernetes DNS
// name "name.namespace.svc[.cluster-domain]" becomes the Service's name.
// Anything else (a plain name, an IP, an external host) is kept as written,
// without the port.
func ServiceID(raw string) string {
	s := strings.TrimSpace(raw)
	if i := strings.Index(s, "://"); i >= 0 {
		s = s[i+3:]
	}
	if i := strings.IndexAny(s, "/?#"); i >= 0 {
		s = s[:i]
	}
	if h, _, err := net.SplitHostPort(s); err == nil {
		s = h
	}
	s = strings.TrimSuffix(strings.Trim(s, "[]"), ".")
	if _, err := netip.ParseAddr(s); err == nil {
		return s
	}
	// name.namespace.svc, name.namespace.svc.cluster.local (any cluster domain)
	if parts := strings.Split(s, "."); len(parts) >= 3 && strings.EqualFold(parts[2], "svc") && parts[0] != "" && parts[1] != "" {
		return parts[0]
	}
	return s
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

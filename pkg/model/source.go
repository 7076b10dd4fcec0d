// Package model is the pure domain of the service map: nodes, edges, their
// statistics, SLO health and the graph a query works on. It does no I/O and
// knows nothing of Grafana.
package model

import (
	"fmt"
	"strings"
)

// Source is one kind of evidence. Sources form a bit set so an edge can say
// cheaply which of them saw it.
type Source uint8

const (
	SourceTraces  Source = 1 << iota // distributed-trace spans / call rows
	SourceNetwork                    // real TCP tables, resolved through Kubernetes
	SourceGateway                    // gateway / load balancer access logs

	AllSources = SourceTraces | SourceNetwork | SourceGateway
)

var sourceNames = []struct {
	bit  Source
	name string
}{{SourceTraces, "traces"}, {SourceNetwork, "network"}, {SourceGateway, "gateway"}}

// Names lists the sources in the set in a fixed order.
func (s Source) Names() []string {
	var out []string
	for _, n := range sourceNames {
		if s&n.bit != 0 {
			out = append(out, n.name)
		}
	}
	return out
}

// String joins the names with commas: "traces,network".
func (s Source) String() string { return strings.Join(s.Names(), ",") }

// Has reports whether all sources of o are in s.
func (s Source) Has(o Source) bool { return s&o == o }

// ParseSources turns names into a set; an empty list means every source.
func ParseSources(names []string) (Source, error) {
	if len(names) == 0 {
		return AllSources, nil
	}
	var set Source
	for _, name := range names {
		found := false
		for _, n := range sourceNames {
			if strings.EqualFold(strings.TrimSpace(name), n.name) {
				set |= n.bit
				found = true
			}
		}
		if !found {
			return 0, fmt.Errorf("unknown source %q (known: traces, network, gateway)", name)
		}
	}
	return set, nil
}

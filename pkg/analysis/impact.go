package analysis

import (
	"fmt"

	"github.com/livemap/servicemap/pkg/model"
)

// Dependent is one node upstream of the analysed service.
type Dependent struct {
	Service string
	Kind    model.NodeKind
	Hops    int // shortest number of calls from it to the analysed service
	Health  model.Health
}

// ImpactScope is everyone who depends, directly or not, on a service.
type ImpactScope struct {
	Service string
	Health  model.Health
	// Upstream are the services that call it, their callers and so on, by
	// hops then name. Virtual callers are not among them.
	Upstream []Dependent
	// EntryPoints are the virtual callers upstream (the user node, external
	// peers): where outside traffic comes in, not services anyone can fix.
	EntryPoints []Dependent
	Degraded    int    // upstream services that are yellow or red
	Summary     string // "4 upstream services depend on payment-service, 3 degraded"
}

// Impact lists every transitive upstream dependent of service with its
// shortest hop count and health.
func Impact(g *model.Graph, service string) (ImpactScope, error) {
	i, err := lookup(g, service)
	if err != nil {
		return ImpactScope{Service: service}, err
	}
	src, _ := ends(g)
	dist := upstream(g, src, i)
	s := ImpactScope{Service: service, Health: g.Nodes[i].Health}
	// Counting sort by hops; nodes come in name order, so names stay sorted
	// within each hop count.
	var perHop []int
	total := 0
	for _, d := range dist {
		if d > 0 {
			for int(d) >= len(perHop) {
				perHop = append(perHop, 0)
			}
			perHop[d]++
			total++
		}
	}
	start := make([]int, len(perHop)) // where each hop count begins in order
	for h := 1; h < len(perHop); h++ {
		start[h] = start[h-1] + perHop[h-1]
	}
	order := make([]int32, total)
	for k, d := range dist {
		if d > 0 {
			order[start[d]] = int32(k)
			start[d]++
		}
	}
	s.Upstream = make([]Dependent, 0, total)
	for _, k := range order {
		n := g.Nodes[k]
		dep := Dependent{Service: n.ID(), Kind: n.Info.Kind, Hops: int(dist[k]), Health: n.Health}
		if entryPoint(n) {
			s.EntryPoints = append(s.EntryPoints, dep)
			continue
		}
		s.Upstream = append(s.Upstream, dep)
		if unhealthy(n.Health) {
			s.Degraded++
		}
	}
	if len(s.Upstream) == 0 {
		s.Upstream = nil
	}
	s.Summary = impactSummary(service, len(s.Upstream), s.Degraded)
	return s, nil
}

func impactSummary(service string, n, degraded int) string {
	if n == 0 {
		return "no upstream service depends on " + service
	}
	return fmt.Sprintf("%d upstream %s on %s, %d degraded",
		n, plural(n, "service depends", "services depend"), service, degraded)
}

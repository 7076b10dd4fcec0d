package analysis

import (
	"fmt"
	"slices"

	"github.com/livemap/servicemap/pkg/model"
)

// DriftResult compares a declared architecture with what the graph observed.
// Observed means present in the graph, which holds only edges with evidence
// in the query range. The virtual user node and its calls are left out: they
// are entry traffic, not architecture.
type DriftResult struct {
	Undeclared []model.EdgeKey // observed, not declared
	Unused     []model.EdgeKey // declared, not observed in the range
	Matched    int             // declared and observed
	Observed   int             // observed edges
	Declared   int             // declared edges
	// Coverage is the share of observed edges the declaration contains;
	// StillSeen the share of declared edges still observed. Both are 0 when
	// there is nothing to divide by.
	Coverage, StillSeen float64

	AddedServices   []string // observed, not declared
	RemovedServices []string // declared, not observed
	// Changed are the Undeclared and Unused edges between services that are
	// both declared and observed: dependencies that moved, as opposed to ones
	// explained by a service coming or going.
	Changed []model.EdgeKey
	Summary string
}

// Drift compares declared edges (from a diagram, a service catalog, or
// Kubernetes NetworkPolicies) with the graph. Declared services are the
// endpoints of the edges; Declared.Drift also counts services declared
// without any dependency.
func Drift(declared []model.EdgeKey, g *model.Graph) DriftResult {
	return drift(nil, declared, g)
}

// Drift compares the declaration with the graph.
func (d *Declared) Drift(g *model.Graph) DriftResult { return drift(d.Services, d.Edges, g) }

func drift(services []string, declared []model.EdgeKey, g *model.Graph) DriftResult {
	var r DriftResult
	declEdges := map[model.EdgeKey]bool{}
	declNodes := map[string]bool{}
	for _, s := range services {
		declNodes[s] = true
	}
	for _, k := range declared {
		declEdges[k] = true
		declNodes[k.Source], declNodes[k.Target] = true, true
	}
	obsEdges := map[model.EdgeKey]bool{}
	obsNodes := map[string]bool{}
	if g != nil {
		for _, n := range g.Nodes {
			if n.Info.Kind != model.KindUser {
				obsNodes[n.ID()] = true
			}
		}
		for _, e := range g.Edges {
			if obsNodes[e.Key.Source] {
				obsEdges[e.Key] = true
			}
		}
	}
	both := func(k model.EdgeKey) bool {
		return declNodes[k.Source] && declNodes[k.Target] && obsNodes[k.Source] && obsNodes[k.Target]
	}
	for k := range obsEdges {
		if declEdges[k] {
			r.Matched++
			continue
		}
		r.Undeclared = append(r.Undeclared, k)
		if both(k) {
			r.Changed = append(r.Changed, k)
		}
	}
	for k := range declEdges {
		if !obsEdges[k] {
			r.Unused = append(r.Unused, k)
			if both(k) {
				r.Changed = append(r.Changed, k)
			}
		}
	}
	for n := range obsNodes {
		if !declNodes[n] {
			r.AddedServices = append(r.AddedServices, n)
		}
	}
	for n := range declNodes {
		if !obsNodes[n] {
			r.RemovedServices = append(r.RemovedServices, n)
		}
	}
	r.Observed, r.Declared = len(obsEdges), len(declEdges)
	if r.Observed > 0 {
		r.Coverage = float64(r.Matched) / float64(r.Observed)
	}
	if r.Declared > 0 {
		r.StillSeen = float64(r.Matched) / float64(r.Declared)
	}
	for _, keys := range [][]model.EdgeKey{r.Undeclared, r.Unused, r.Changed} {
		slices.SortFunc(keys, cmpKey)
	}
	slices.Sort(r.AddedServices)
	slices.Sort(r.RemovedServices)
	r.Summary = fmt.Sprintf("the declaration contains %.0f %% of observed dependencies, %.0f %% of declared dependencies are still seen; "+
		"%d %s added, %d removed, %d %s changed",
		100*r.Coverage, 100*r.StillSeen,
		len(r.AddedServices), plural(len(r.AddedServices), "service", "services"), len(r.RemovedServices),
		len(r.Changed), plural(len(r.Changed), "dependency", "dependencies"))
	return r
}

package plugin

import (
	"context"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"

	"github.com/livemap/servicemap/pkg/analysis"
	"github.com/livemap/servicemap/pkg/frames"
	"github.com/livemap/servicemap/pkg/model"
)

// Baselines of a changes query. The current window is always the query
// range [from, to); the baseline is a window of the same length:
//
//	previousRange (default): [from - length, from), the range just before
//	since:                   [since - length, since), since an RFC3339 time
//	                         or a date (midnight UTC)
//	lastDeploy:              [deploy - length, deploy), deploy being the
//	                         LastDeploy of the query's service
const (
	baselinePrevious   = "previousRange"
	baselineSince      = "since"
	baselineLastDeploy = "lastDeploy"
)

// baselineRange resolves the baseline window of a validated changes query.
func (d *Datasource) baselineRange(q backend.DataQuery, query Query) (from, to time.Time, err error) {
	length := q.TimeRange.To.Sub(q.TimeRange.From)
	end := q.TimeRange.From
	switch query.Baseline {
	case baselineSince:
		end = query.since
	case baselineLastDeploy:
		info, ok := d.store.Nodes()[query.Service]
		if !ok {
			return from, to, errorf("service: unknown service %q", query.Service)
		}
		if info.LastDeploy.IsZero() {
			return from, to, errorf("service: the last deploy of %q is unknown (deploy times come from the Kubernetes source)", query.Service)
		}
		end = info.LastDeploy
	}
	return end.Add(-length), end, nil
}

// changes answers what changed on the map from the baseline window to the
// query range. With a service (or namespace) it compares only that
// neighbourhood: the nodes within depthUp callers and depthDown callees of
// it in either window, and every edge between them, so that an incident
// view shows what changed around the broken service and not across the
// whole company.
func (d *Datasource) changes(_ context.Context, q backend.DataQuery, query Query) backend.DataResponse {
	bFrom, bTo, err := d.baselineRange(q, query)
	if err != nil {
		return badRequest("changes query: %v", err)
	}
	base, err := d.wholeGraph(bFrom, bTo, query)
	if err != nil {
		return badRequest("%v", err)
	}
	cur, err := d.wholeGraph(q.TimeRange.From, q.TimeRange.To, query)
	if err != nil {
		return badRequest("%v", err)
	}
	curAll := cur // the union keeps node stats of the whole map, as serviceMap's focus does
	keep := func(*model.Node) bool { return true }
	if query.Service != "" || query.Namespace != "" {
		near, err := d.neighbourhood(query, base, cur)
		if err != nil {
			return badRequest("changes query: %v", err)
		}
		keep = func(n *model.Node) bool { return near[n.ID()] }
		base, cur = base.Subgraph(keep), cur.Subgraph(keep)
	}
	diff := analysis.Diff(base, cur, analysis.DefaultDiffThresholds)
	// The union: the current graph plus what was removed, removed edges
	// carrying their baseline traffic.
	union := make([]*model.Edge, 0, len(curAll.Edges)+len(diff.RemovedEdges))
	for _, e := range curAll.Edges {
		c := *e
		union = append(union, &c)
	}
	removed := map[model.EdgeKey]bool{}
	for _, k := range diff.RemovedEdges {
		removed[k] = true
	}
	for _, e := range base.Edges {
		if removed[e.Key] {
			c := *e
			union = append(union, &c)
		}
	}
	in := frames.ChangesInput{
		Baseline: base, Current: cur, Diff: diff,
		Union: model.Build(q.TimeRange.From, q.TimeRange.To, union, d.store.Nodes(), d.settings.SLOs).Subgraph(keep),
	}
	return selectFrames(q, frames.Changes(in, d.links, q.RefID, d.staleNotices()))
}

// neighbourhood is the set of nodes near the query's focus in either graph:
// a service that lost its last caller is still near the focus.
func (d *Datasource) neighbourhood(query Query, graphs ...*model.Graph) (map[string]bool, error) {
	up, down, err := query.depths()
	if err != nil {
		return nil, err
	}
	near := map[string]bool{}
	for _, g := range graphs {
		for _, n := range g.Focus(query.Service, query.Namespace, up, down).Nodes {
			near[n.ID()] = true
		}
	}
	if query.Service != "" && !near[query.Service] {
		if _, known := d.store.Nodes()[query.Service]; !known {
			return nil, errorf("service: unknown service %q (not seen in the baseline or the query range)", query.Service)
		}
	}
	return near, nil
}

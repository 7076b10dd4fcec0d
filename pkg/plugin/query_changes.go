package plugin

import (
	"context"
	"strings"
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
//	lastDeploy:              [deploy - length, deploy), deploy being the
//	                         LastDeploy of the query's service
const (
	baselinePrevious   = "previousRange"
	baselineSince      = "since"
	baselineLastDeploy = "lastDeploy"
)

// baselineRange resolves the baseline window of a changes query.
func (d *Datasource) baselineRange(q backend.DataQuery, query Query) (from, to time.Time, err error) {
	length := q.TimeRange.To.Sub(q.TimeRange.From)
	var end time.Time
	switch query.Baseline {
	case "", baselinePrevious:
		end = q.TimeRange.From
	case baselineSince:
		if strings.TrimSpace(query.Since) == "" {
			return from, to, errorf("baseline %q needs the since field (an RFC3339 time such as 2026-11-23T10:00:00Z)", baselineSince)
		}
		end, err = time.Parse(time.RFC3339, strings.TrimSpace(query.Since))
		if err != nil {
			return from, to, errorf("since must be an RFC3339 time such as 2026-11-23T10:00:00Z, got %q", query.Since)
		}
	case baselineLastDeploy:
		service := strings.TrimSpace(query.Service)
		if service == "" {
			return from, to, errorf("baseline %q needs the service field (whose last deploy to compare against)", baselineLastDeploy)
		}
		info, ok := d.store.Nodes()[service]
		if !ok {
			return from, to, errorf("unknown service %q", service)
		}
		if info.LastDeploy.IsZero() {
			return from, to, errorf("the last deploy of %q is unknown (deploy times come from the Kubernetes source)", service)
		}
		end = info.LastDeploy
	default:
		return from, to, errorf("unknown baseline %q (want %s, %s or %s)", query.Baseline, baselinePrevious, baselineSince, baselineLastDeploy)
	}
	return end.Add(-length), end, nil
}

// changes answers what changed on the map from the baseline window to the
// query range.
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
	diff := analysis.Diff(base, cur, analysis.DefaultDiffThresholds)
	// The union: the current graph plus what was removed, removed edges
	// carrying their baseline traffic.
	union := make([]*model.Edge, 0, len(cur.Edges)+len(diff.RemovedEdges))
	for _, e := range cur.Edges {
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
		Union: model.Build(q.TimeRange.From, q.TimeRange.To, union, d.store.Nodes(), d.settings.SLOs),
	}
	return selectFrames(q, frames.Changes(in, d.links, q.RefID, d.staleNotices()))
}

package plugin

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/livemap/servicemap/pkg/frames"
	"github.com/livemap/servicemap/pkg/model"
)

// edgeMetrics answers with one labelled series per edge, in the dataplane
// shapes Grafana Alerting accepts: timeseries-wide bucketed by the query
// interval, or numeric-wide with one value per edge over the whole range.
func (d *Datasource) edgeMetrics(_ context.Context, q backend.DataQuery, query Query) backend.DataResponse {
	metric := query.Metric
	if metric == "" {
		metric = "error_rate"
	}
	if err := frames.CheckMetric(metric); err != nil {
		return badRequest("%v", err)
	}
	sources, err := query.sourceSet()
	if err != nil {
		return badRequest("%v", err)
	}
	keep := func(k model.EdgeKey) bool {
		return (query.SourceFilter == "" || k.Source == query.SourceFilter) &&
			(query.TargetFilter == "" || k.Target == query.TargetFilter)
	}
	from, to := q.TimeRange.From, q.TimeRange.To
	var frame *data.Frame
	switch query.Format {
	case "", "timeseries":
		starts, windows := d.store.Windows(from, to, q.Interval, sources)
		step := time.Minute
		if len(starts) > 1 {
			step = starts[1].Sub(starts[0])
		}
		var series []frames.EdgeSeries
		for key, row := range windows {
			if !keep(key) {
				continue
			}
			s := frames.EdgeSeries{Key: key, Values: make([]*float64, len(row))}
			for i, e := range row {
				if e != nil && s.Protocol == "" {
					s.Protocol = e.Info.Protocol
				}
				end := starts[i].Add(step)
				if end.After(to) {
					end = to
				}
				secs := end.Sub(maxTime(starts[i], from)).Seconds()
				s.Values[i] = frames.MetricValue(metric, e, secs)
			}
			series = append(series, s)
		}
		sortSeries(series)
		frame = frames.TimeSeriesWide(metric, starts, series, d.staleNotices())
	case "numeric":
		edges, _ := d.store.Snapshot(from, to, sources)
		secs := to.Sub(from).Seconds()
		var series []frames.EdgeSeries
		for _, e := range edges {
			if keep(e.Key) {
				series = append(series, frames.EdgeSeries{Key: e.Key, Protocol: e.Info.Protocol,
					Values: []*float64{frames.MetricValue(metric, e, secs)}})
			}
		}
		sortSeries(series)
		frame = frames.NumericWide(metric, series, d.staleNotices())
	default:
		return badRequest("unknown format %q (want timeseries or numeric)", query.Format)
	}
	frame.RefID = q.RefID
	return backend.DataResponse{Frames: data.Frames{frame}}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func sortSeries(s []frames.EdgeSeries) {
	slices.SortFunc(s, func(a, b frames.EdgeSeries) int {
		if c := strings.Compare(a.Key.Source, b.Key.Source); c != 0 {
			return c
		}
		return strings.Compare(a.Key.Target, b.Key.Target)
	})
}

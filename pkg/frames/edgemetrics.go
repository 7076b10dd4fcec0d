package frames

import (
	"fmt"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/livemap/servicemap/pkg/model"
)

// Metrics an edgeMetrics query can ask for, with their units.
var metricUnits = map[string]string{
	"requests_per_second": "reqps",
	"error_rate":          "percentunit",
	"p99_latency_ms":      "ms",
}

// CheckMetric names the metric that is not known.
func CheckMetric(metric string) error {
	if _, ok := metricUnits[metric]; !ok {
		return fmt.Errorf("unknown metric %q (want requests_per_second, error_rate or p99_latency_ms)", metric)
	}
	return nil
}

// MetricValue reads one metric off an edge's stats; nil when there is nothing
// to say (no calls: no error rate; no timings: no p99).
func MetricValue(metric string, e *model.Edge, seconds float64) *float64 {
	if e == nil {
		if metric == "requests_per_second" {
			zero := 0.0
			return &zero
		}
		return nil
	}
	switch metric {
	case "requests_per_second":
		v := e.Stats.Rate(seconds)
		return &v
	case "error_rate":
		return optional(e.Stats.ErrorRate())
	default:
		return optional(e.Stats.P99Ms())
	}
}

// EdgeSeries is one edge's values of a metric.
type EdgeSeries struct {
	Key      model.EdgeKey
	Protocol string
	Values   []*float64
}

func labels(s EdgeSeries) data.Labels {
	l := data.Labels{"source": s.Key.Source, "target": s.Key.Target}
	if s.Protocol != "" {
		l["protocol"] = s.Protocol
	}
	return l
}

func valueField(metric string, s EdgeSeries) *data.Field {
	f := data.NewField(metric, labels(s), s.Values)
	f.Config = &data.FieldConfig{Unit: metricUnits[metric],
		DisplayNameFromDS: s.Key.Source + " → " + s.Key.Target}
	return f
}

// TimeSeriesWide is a dataplane "timeseries-wide" frame: one time field and
// one value field per edge, labelled source/target/protocol, so Grafana
// Alerting makes one alert instance per edge.
func TimeSeriesWide(metric string, times []time.Time, series []EdgeSeries, warnings []string) *data.Frame {
	fields := []*data.Field{data.NewField("time", nil, times)}
	for _, s := range series {
		fields = append(fields, valueField(metric, s))
	}
	f := data.NewFrame(metric, fields...)
	f.Meta = &data.FrameMeta{Type: data.FrameTypeTimeSeriesWide, TypeVersion: data.FrameTypeVersion{0, 1}, Notices: notices(warnings)}
	return f
}

// NumericWide is a dataplane "numeric-wide" frame: one row, one labelled value
// field per edge. Alert rules need no reduce step on it.
func NumericWide(metric string, series []EdgeSeries, warnings []string) *data.Frame {
	fields := make([]*data.Field, 0, len(series))
	for _, s := range series {
		fields = append(fields, valueField(metric, s))
	}
	f := data.NewFrame(metric, fields...)
	f.Meta = &data.FrameMeta{Type: data.FrameTypeNumericWide, TypeVersion: data.FrameTypeVersion{0, 1}, Notices: notices(warnings)}
	return f
}

package frames

import (
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/livemap/servicemap/pkg/model"
)

func ptr(v float64) *float64 { return &v }

func series() []EdgeSeries {
	return []EdgeSeries{
		{Key: model.EdgeKey{Source: "frontend", Target: "checkout"}, Protocol: "HTTP", Values: []*float64{ptr(0.1), nil}},
		{Key: model.EdgeKey{Source: "checkout", Target: "db"}, Values: []*float64{ptr(0), ptr(0.02)}},
	}
}

// Alerting makes one instance per label set: every value field carries
// source and target (and protocol when known), and no two are alike.
func wantAlertableFields(t *testing.T, f *data.Frame, metric, unit string, valueFields []*data.Field) {
	t.Helper()
	seen := map[string]bool{}
	for _, fld := range valueFields {
		if fld.Name != metric {
			t.Errorf("value field %q, want %q", fld.Name, metric)
		}
		if fld.Labels["source"] == "" || fld.Labels["target"] == "" {
			t.Errorf("value field without source/target labels: %v", fld.Labels)
		}
		if seen[fld.Labels.String()] {
			t.Errorf("duplicate labels %v", fld.Labels)
		}
		seen[fld.Labels.String()] = true
		if fld.Config == nil || fld.Config.Unit != unit ||
			fld.Config.DisplayNameFromDS != fld.Labels["source"]+" → "+fld.Labels["target"] {
			t.Errorf("config %+v for %v", fld.Config, fld.Labels)
		}
		if fld.Type() != data.FieldTypeNullableFloat64 {
			t.Errorf("value type %s", fld.Type())
		}
	}
}

func TestTimeSeriesWideFrame(t *testing.T) {
	times := []time.Time{t0, t0.Add(time.Minute)}
	f := TimeSeriesWide("error_rate", times, series(), []string{"stale"})
	if f.Name != "error_rate" {
		t.Errorf("name %q", f.Name)
	}
	if f.Meta.Type != data.FrameTypeTimeSeriesWide || f.Meta.TypeVersion != (data.FrameTypeVersion{0, 1}) {
		t.Errorf("type %s %v, want timeseries-wide 0.1", f.Meta.Type, f.Meta.TypeVersion)
	}
	if len(f.Meta.Notices) != 1 {
		t.Errorf("notices %+v", f.Meta.Notices)
	}
	if f.Fields[0].Name != "time" || f.Fields[0].Type() != data.FieldTypeTime {
		t.Fatalf("first field %s %s, want the time", f.Fields[0].Name, f.Fields[0].Type())
	}
	wantColumn(t, f, "time", "2026-03-01T12:00:00Z", "2026-03-01T12:01:00Z")
	wantAlertableFields(t, f, "error_rate", "percentunit", f.Fields[1:])
	if got := f.Fields[1].Labels; got.String() != "protocol=HTTP, source=frontend, target=checkout" {
		t.Errorf("labels %s", got)
	}
	if _, ok := f.Fields[2].Labels["protocol"]; ok {
		t.Errorf("an unknown protocol is a label: %v", f.Fields[2].Labels)
	}
	if v, _ := f.Fields[1].NullableFloatAt(1); v != nil {
		t.Errorf("a bucket without calls has error rate %v, want null", *v)
	}
	if v, _ := f.Fields[2].NullableFloatAt(1); v == nil || *v != 0.02 {
		t.Errorf("checkout->db second bucket %v", v)
	}
	if schema := f.TimeSeriesSchema(); schema.Type != data.TimeSeriesTypeWide {
		t.Errorf("the SDK reads it as time series type %v, want wide", schema.Type)
	}
}

func TestNumericWideFrame(t *testing.T) {
	s := series()
	for i := range s {
		s[i].Values = s[i].Values[:1] // one row
	}
	for metric, unit := range map[string]string{"requests_per_second": "reqps", "error_rate": "percentunit", "p99_latency_ms": "ms"} {
		f := NumericWide(metric, s, nil)
		if f.Meta.Type != data.FrameTypeNumericWide || f.Meta.TypeVersion != (data.FrameTypeVersion{0, 1}) {
			t.Errorf("type %s %v, want numeric-wide 0.1", f.Meta.Type, f.Meta.TypeVersion)
		}
		if f.Rows() != 1 || len(f.Fields) != 2 {
			t.Fatalf("%d rows, %d fields: one row, one field per edge", f.Rows(), len(f.Fields))
		}
		if tf, _ := f.FieldByName("time"); tf != nil {
			t.Error("numeric frames carry no time")
		}
		wantAlertableFields(t, f, metric, unit, f.Fields)
	}
	// no edges: a frame with no fields, still typed, so alerting sees "no data"
	if f := NumericWide("error_rate", nil, nil); len(f.Fields) != 0 || f.Meta.Type != data.FrameTypeNumericWide {
		t.Errorf("empty: %d fields, type %s", len(f.Fields), f.Meta.Type)
	}
}

func TestMetricValues(t *testing.T) {
	busy := call("a", "b", 1800, 90, 200) // over 900 s: 2 req/s, 5 % errors
	idle := call("a", "c", 0, 0, 0)
	for _, c := range []struct {
		metric string
		edge   *model.Edge
		want   string
	}{
		{"requests_per_second", busy, "2"},
		{"error_rate", busy, "0.05"},
		{"p99_latency_ms", busy, "~200"},
		{"requests_per_second", idle, "0"},
		{"error_rate", idle, "-"}, // no calls: nothing to say
		{"p99_latency_ms", idle, "-"},
		{"requests_per_second", nil, "0"}, // an edge absent from a bucket made no requests
		{"error_rate", nil, "-"},
		{"p99_latency_ms", nil, "-"},
	} {
		v := MetricValue(c.metric, c.edge, 900)
		switch {
		case c.want == "-":
			if v != nil {
				t.Errorf("%s of %v = %v, want null", c.metric, c.edge, *v)
			}
		case strings.HasPrefix(c.want, "~"):
			if v == nil || *v < 198 || *v > 202 {
				t.Errorf("%s = %v, want 200 within 1 %%", c.metric, v)
			}
		default:
			f := Table("v", "", nil, Column{Name: "v", Values: []*float64{v}})
			wantColumn(t, f, "v", c.want)
		}
	}
}

func TestCheckMetric(t *testing.T) {
	for _, m := range []string{"requests_per_second", "error_rate", "p99_latency_ms"} {
		if err := CheckMetric(m); err != nil {
			t.Errorf("%s: %v", m, err)
		}
	}
	err := CheckMetric("latency")
	if err == nil || err.Error() != `unknown metric "latency" (want requests_per_second, error_rate or p99_latency_ms)` {
		t.Errorf("error %v", err)
	}
}

package frames

import (
	"flag"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/livemap/servicemap/pkg/model"
)

var update = flag.Bool("update", false, "rewrite golden files")

// A 15-minute range: 900 calls make 1 request per second.
var (
	t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	t1 = t0.Add(15 * time.Minute)
)

// call makes an edge with calls (errs failed), every call taking ms.
func call(src, dst string, calls, errs uint64, ms float64) *model.Edge {
	e := &model.Edge{Key: model.EdgeKey{Source: src, Target: dst}, Sources: model.SourceTraces,
		Info: model.EdgeInfo{Protocol: "HTTP"}, FirstSeen: t0, LastSeen: t1.Add(-time.Minute)}
	e.Stats.Calls, e.Stats.Errors = calls, errs
	if calls > 0 {
		e.Stats.Latency.AddN(ms, calls)
		e.Stats.LatencySumMs = ms * float64(calls)
	}
	return e
}

// build makes a graph under the default SLO; "user" is the virtual user.
func build(infos map[string]model.NodeInfo, edges ...*model.Edge) *model.Graph {
	if infos == nil {
		infos = map[string]model.NodeInfo{}
	}
	return model.Build(t0, t1, edges, infos, model.SLOs{Default: model.DefaultSLO})
}

// field finds a field by name or fails.
func field(t *testing.T, f *data.Frame, name string) *data.Field {
	t.Helper()
	fld, _ := f.FieldByName(name)
	if fld == nil {
		t.Fatalf("frame %q has no field %q (has %s)", f.Name, name, fieldNames(f))
	}
	return fld
}

func fieldNames(f *data.Frame) string {
	names := make([]string, len(f.Fields))
	for i, fld := range f.Fields {
		names[i] = fld.Name
	}
	return strings.Join(names, ",")
}

// column renders one field's values: nil as "-", floats %.4g, times RFC3339.
func column(t *testing.T, f *data.Frame, name string) []string {
	t.Helper()
	fld := field(t, f, name)
	out := make([]string, fld.Len())
	for i := range out {
		v, ok := fld.ConcreteAt(i)
		switch x := v.(type) {
		case nil:
			out[i] = "-"
		case float64:
			out[i] = fmt.Sprintf("%.4g", x)
		case time.Time:
			out[i] = x.UTC().Format(time.RFC3339)
		default:
			out[i] = fmt.Sprint(x)
		}
		if !ok {
			out[i] = "-"
		}
	}
	return out
}

func wantColumn(t *testing.T, f *data.Frame, name string, want ...string) {
	t.Helper()
	if got := column(t, f, name); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("%s.%s = %q, want %q", f.Name, name, got, want)
	}
}

// wantField checks a field's type and display config.
func wantField(t *testing.T, f *data.Frame, name string, typ data.FieldType, display, unit string) {
	t.Helper()
	fld := field(t, f, name)
	if fld.Type() != typ {
		t.Errorf("%s.%s is %s, want %s", f.Name, name, fld.Type(), typ)
	}
	var gotDisplay, gotUnit string
	if fld.Config != nil {
		gotDisplay, gotUnit = fld.Config.DisplayName, fld.Config.Unit
	}
	if gotDisplay != display || gotUnit != unit {
		t.Errorf("%s.%s config: display %q unit %q, want %q %q", f.Name, name, gotDisplay, gotUnit, display, unit)
	}
}

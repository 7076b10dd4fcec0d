package frames

import (
	"strings"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/data"
)

// Column is one column of a table frame: a field name, how Grafana shows it
// and the values, a typed slice ([]string, []int64, []*float64, []bool, ...).
type Column struct {
	Name, Display, Unit string
	Values              any
}

// Table is a frame the Table panel prefers, named and tagged with the
// query's refId. Warnings become notices on it.
func Table(name, refID string, warnings []string, cols ...Column) *data.Frame {
	fields := make([]*data.Field, 0, len(cols))
	for _, c := range cols {
		f := data.NewField(c.Name, nil, c.Values)
		if c.Display != "" || c.Unit != "" {
			f.Config = &data.FieldConfig{DisplayName: c.Display, Unit: c.Unit}
		}
		fields = append(fields, f)
	}
	f := data.NewFrame(name, fields...)
	f.RefID = refID
	f.Meta = &data.FrameMeta{PreferredVisualization: data.VisTypeTable, Notices: notices(warnings)}
	return f
}

// AnnotationEvent is one annotation: a point in time, or a region when End
// is set.
type AnnotationEvent struct {
	Time, End   time.Time
	Title, Text string
	Tags        []string
}

// Annotations is the frame Grafana reads annotations from: time, timeEnd
// (only when some event is a region), title, text and tags (comma-joined).
func Annotations(refID string, events []AnnotationEvent) *data.Frame {
	n := len(events)
	times, ends := make([]time.Time, n), make([]*time.Time, n)
	titles, texts, tags := make([]string, n), make([]string, n), make([]string, n)
	anyEnd := false
	for i, e := range events {
		times[i], titles[i], texts[i] = e.Time, e.Title, e.Text
		tags[i] = strings.Join(e.Tags, ",")
		if !e.End.IsZero() {
			end := e.End
			ends[i], anyEnd = &end, true
		}
	}
	fields := []*data.Field{data.NewField("time", nil, times)}
	if anyEnd {
		fields = append(fields, data.NewField("timeEnd", nil, ends))
	}
	fields = append(fields,
		data.NewField("title", nil, titles),
		data.NewField("text", nil, texts),
		data.NewField("tags", nil, tags))
	f := data.NewFrame("annotations", fields...)
	f.RefID = refID
	return f
}

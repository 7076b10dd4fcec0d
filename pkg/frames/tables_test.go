package frames

import (
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/data"
)

func TestTableFrame(t *testing.T) {
	half := 0.5
	f := Table("summary", "B", []string{"trace source stale"},
		Column{Name: "service", Display: "Service", Values: []string{"a", "b"}},
		Column{Name: "share", Display: "Share", Unit: "percentunit", Values: []*float64{&half, nil}},
		Column{Name: "hops", Values: []int64{1, 2}},
		Column{Name: "cycle", Values: []bool{false, true}},
	)
	if f.Name != "summary" || f.RefID != "B" || f.Rows() != 2 {
		t.Fatalf("frame %q refId %q rows %d", f.Name, f.RefID, f.Rows())
	}
	if f.Meta.PreferredVisualization != data.VisTypeTable {
		t.Errorf("prefers %q, want table", f.Meta.PreferredVisualization)
	}
	if len(f.Meta.Notices) != 1 || f.Meta.Notices[0].Text != "trace source stale" || f.Meta.Notices[0].Severity != data.NoticeSeverityWarning {
		t.Errorf("notices %+v", f.Meta.Notices)
	}
	if fieldNames(f) != "service,share,hops,cycle" {
		t.Errorf("columns %s", fieldNames(f))
	}
	wantField(t, f, "service", data.FieldTypeString, "Service", "")
	wantField(t, f, "share", data.FieldTypeNullableFloat64, "Share", "percentunit")
	wantField(t, f, "hops", data.FieldTypeInt64, "", "")
	wantField(t, f, "cycle", data.FieldTypeBool, "", "")
	// a column without display or unit gets no config at all
	if field(t, f, "hops").Config != nil {
		t.Errorf("hops config %+v, want none", field(t, f, "hops").Config)
	}
	wantColumn(t, f, "share", "0.5", "-")
	wantColumn(t, f, "cycle", "false", "true")

	if quiet := Table("x", "A", nil); len(quiet.Meta.Notices) != 0 || len(quiet.Fields) != 0 {
		t.Errorf("no warnings, no columns: %+v, %d fields", quiet.Meta.Notices, len(quiet.Fields))
	}
}

func TestAnnotationsFrame(t *testing.T) {
	at := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	points := Annotations("Anno", []AnnotationEvent{
		{Time: at, Title: "Deploy: a", Text: "a deployed", Tags: []string{"deploy", "a", "shop"}},
		{Time: at.Add(time.Hour), Title: "Deploy: b", Text: "b deployed"},
	})
	if points.Name != "annotations" || points.RefID != "Anno" {
		t.Errorf("frame %q refId %q", points.Name, points.RefID)
	}
	// Grafana reads time, title, text and tags; no timeEnd when every event is a point
	if got := fieldNames(points); got != "time,title,text,tags" {
		t.Errorf("fields %s", got)
	}
	wantField(t, points, "time", data.FieldTypeTime, "", "")
	wantColumn(t, points, "time", "2026-03-01T10:00:00Z", "2026-03-01T11:00:00Z")
	wantColumn(t, points, "tags", "deploy,a,shop", "")
	wantColumn(t, points, "title", "Deploy: a", "Deploy: b")

	regions := Annotations("Anno", []AnnotationEvent{
		{Time: at, Title: "point"},
		{Time: at, End: at.Add(30 * time.Minute), Title: "rollout"},
	})
	if got := fieldNames(regions); got != "time,timeEnd,title,text,tags" {
		t.Errorf("fields with a region %s", got)
	}
	wantField(t, regions, "timeEnd", data.FieldTypeNullableTime, "", "")
	wantColumn(t, regions, "timeEnd", "-", "2026-03-01T10:30:00Z")

	if empty := Annotations("Anno", nil); empty.Rows() != 0 || fieldNames(empty) != "time,title,text,tags" {
		t.Errorf("no events: %d rows, fields %s", empty.Rows(), fieldNames(empty))
	}
}

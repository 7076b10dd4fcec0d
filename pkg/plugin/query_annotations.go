package plugin

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/livemap/servicemap/pkg/frames"
)

// deployAnnotations marks each service's last deploy that falls in the query
// range, optionally only the query's service. Deploy times come from node
// info (the Kubernetes source); without it the frame is empty.
func (d *Datasource) deployAnnotations(_ context.Context, q backend.DataQuery, query Query) backend.DataResponse {
	service := strings.TrimSpace(query.Service)
	var events []frames.AnnotationEvent
	for id, n := range d.store.Nodes() {
		if service != "" && id != service {
			continue
		}
		t := n.LastDeploy
		if t.IsZero() || t.Before(q.TimeRange.From) || !t.Before(q.TimeRange.To) {
			continue
		}
		text := id + " deployed at " + t.UTC().Format(time.RFC3339)
		tags := []string{"deploy", id}
		if n.Namespace != "" {
			text += " in namespace " + n.Namespace
			tags = append(tags, n.Namespace)
		}
		if n.Team != "" {
			text += " (owner " + n.Team + ")"
		}
		events = append(events, frames.AnnotationEvent{Time: t, Title: "Deploy: " + id, Text: text, Tags: tags})
	}
	slices.SortFunc(events, func(a, b frames.AnnotationEvent) int {
		return cmp.Or(a.Time.Compare(b.Time), strings.Compare(a.Title, b.Title))
	})
	return backend.DataResponse{Frames: data.Frames{frames.Annotations(q.RefID, events)}}
}

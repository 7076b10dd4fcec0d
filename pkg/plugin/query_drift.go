package plugin

import (
	"context"
	"fmt"
	"strings"

	"github.com/grafana/grafana-plugin-sdk-go/backend"

	"github.com/livemap/servicemap/pkg/analysis"
	"github.com/livemap/servicemap/pkg/frames"
	"github.com/livemap/servicemap/pkg/model"
)

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }

// drift compares the declared architecture of the settings with the map of
// the query range.
func (d *Datasource) drift(_ context.Context, q backend.DataQuery, query Query) backend.DataResponse {
	if strings.TrimSpace(d.settings.Declared) == "" {
		return badRequest("drift query: no declared architecture: paste it (YAML) into declaredArchitecture in the data source settings")
	}
	decl, err := analysis.ParseDeclared(d.settings.Declared)
	if err != nil {
		return badRequest("drift query: declaredArchitecture: %v", err)
	}
	if len(decl.Edges) == 0 && len(decl.Services) == 0 {
		return badRequest("drift query: the declared architecture names no service")
	}
	g, err := d.wholeGraph(q.TimeRange.From, q.TimeRange.To, query)
	if err != nil {
		return badRequest("%v", err)
	}
	r := decl.Drift(g)
	unused := map[model.EdgeKey]bool{}
	for _, k := range r.Unused {
		unused[k] = true
	}
	var matched []model.EdgeKey
	for _, k := range decl.Edges {
		if !unused[k] {
			matched = append(matched, k)
		}
	}
	return selectFrames(q, frames.Drift(r, matched, q.RefID, d.staleNotices()))
}

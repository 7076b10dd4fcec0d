package plugin

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/axiomhq/hyperloglog"
	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/livemap/servicemap/pkg/analysis"
	"github.com/livemap/servicemap/pkg/frames"
	"github.com/livemap/servicemap/pkg/model"
)

// entryClients is the store's per-entry-service client sketches of the
// query range, as analysis.UserCounts: no gateway client data at all means
// BlastRadius says "no gateway data" and never guesses.
type entryClients map[string]*hyperloglog.Sketch

func (e entryClients) EntryUsers() (map[string]*hyperloglog.Sketch, bool) { return e, len(e) > 0 }

// impact answers "who is hit when this service fails, where does the failure
// start and in which order do we bring things back" for the query's service
// over the whole (unfocused) map of the range.
func (d *Datasource) impact(_ context.Context, q backend.DataQuery, query Query) backend.DataResponse {
	service := strings.TrimSpace(query.Service)
	if service == "" {
		return badRequest("impact query: the service field is required (the service to analyse)")
	}
	g, err := d.wholeGraph(q.TimeRange.From, q.TimeRange.To, query)
	if err != nil {
		return badRequest("%v", err)
	}
	scope, err := analysis.Impact(g, service)
	if err != nil {
		return badRequest("impact query: service: %v", err)
	}
	affected, err := analysis.AffectedSet(g, service)
	if err != nil {
		return badRequest("impact query: service: %v", err)
	}
	steps, err := analysis.RecoveryOrder(g, affected)
	if err != nil {
		return badRequest("impact query: %v", err)
	}
	in := frames.ImpactInput{
		Scope:     scope,
		Blast:     analysis.BlastRadius(g, service, entryClients(d.store.EntryClients(q.TimeRange.From, q.TimeRange.To))),
		RootCause: analysis.RootCause(g, service),
		Affected:  affected,
		Recovery:  steps,
	}
	return selectFrames(q, frames.Impact(g, in, d.links, q.RefID, d.staleNotices()))
}

// wholeGraph builds the map of [from, to) from the sources the query allows,
// without focusing on the query's service.
func (d *Datasource) wholeGraph(from, to time.Time, query Query) (*model.Graph, error) {
	sources, err := query.sourceSet()
	if err != nil {
		return nil, err
	}
	edges, infos := d.store.Snapshot(from, to, sources)
	return model.Build(from, to, edges, infos, d.settings.SLOs), nil
}

// selectFrames keeps only the frames named by the optional "frame" field of
// the query JSON (one name, or several separated by commas), so a dashboard
// panel can show one table of a multi-frame answer. Without it every frame
// is returned.
func selectFrames(q backend.DataQuery, all data.Frames) backend.DataResponse {
	var sel struct {
		Frame string `json:"frame"`
	}
	_ = json.Unmarshal(q.JSON, &sel) // already parsed once as a Query: well-formed
	if strings.TrimSpace(sel.Frame) == "" {
		return backend.DataResponse{Frames: all}
	}
	byName := make(map[string]*data.Frame, len(all))
	names := make([]string, 0, len(all))
	for _, f := range all {
		byName[f.Name] = f
		names = append(names, f.Name)
	}
	var out data.Frames
	for _, name := range strings.Split(sel.Frame, ",") {
		f, ok := byName[strings.TrimSpace(name)]
		if !ok {
			return badRequest("unknown frame %q (this query returns %s)", strings.TrimSpace(name), strings.Join(names, ", "))
		}
		out = append(out, f)
	}
	return backend.DataResponse{Frames: out}
}

package plugin

import (
	"context"
	"strings"
	"time"

	"github.com/axiomhq/hyperloglog"
	"github.com/grafana/grafana-plugin-sdk-go/backend"

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

package plugin

import (
	"context"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/livemap/servicemap/pkg/frames"
	"github.com/livemap/servicemap/pkg/model"
)

const maxDepth = 10

// serviceMap answers with the nodes and edges frames of the Node Graph panel.
func (d *Datasource) serviceMap(_ context.Context, q backend.DataQuery, query Query) backend.DataResponse {
	g, err := d.graph(q, query)
	if err != nil {
		return badRequest("%v", err)
	}
	nodes, edges := frames.NodeGraph(g, d.links, d.staleNotices())
	nodes.RefID, edges.RefID = q.RefID, q.RefID
	return backend.DataResponse{Frames: data.Frames{nodes, edges}}
}

// graph builds the (focused) graph a query asks for.
func (d *Datasource) graph(q backend.DataQuery, query Query) (*model.Graph, error) {
	sources, err := query.sourceSet()
	if err != nil {
		return nil, err
	}
	up, down, err := query.depths()
	if err != nil {
		return nil, err
	}
	edges, infos := d.store.Snapshot(q.TimeRange.From, q.TimeRange.To, sources)
	g := model.Build(q.TimeRange.From, q.TimeRange.To, edges, infos, d.settings.SLOs)
	if query.Service != "" || query.Namespace != "" {
		g = g.Focus(query.Service, query.Namespace, up, down)
	}
	return g, nil
}

package plugin

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/backend/datasource"
	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/livemap/servicemap/pkg/model"
)

// Query is the JSON model of every query type (src/types.ts mirrors it).
type Query struct {
	Service      string   `json:"service"`
	Namespace    string   `json:"namespace"`
	DepthUp      *int     `json:"depthUp"`
	DepthDown    *int     `json:"depthDown"`
	Sources      []string `json:"sources"`
	Metric       string   `json:"metric"`
	Format       string   `json:"format"`
	SourceFilter string   `json:"sourceFilter"`
	TargetFilter string   `json:"targetFilter"`
	Baseline     string   `json:"baseline"`
	Since        string   `json:"since"`
}

// queryHandler answers one query of a known type.
type queryHandler func(ctx context.Context, q backend.DataQuery, parsed Query) backend.DataResponse

func (d *Datasource) buildMux() {
	d.mux = datasource.NewQueryTypeMux()
	d.handle("serviceMap", d.serviceMap)
	d.handle("edgeMetrics", d.edgeMetrics)
	d.handle("impact", d.impact)
	d.handle("changes", d.changes)
	d.handle("drift", d.drift)
	d.handle("deployAnnotations", d.deployAnnotations)
	d.mux.HandleFunc("", func(ctx context.Context, req *backend.QueryDataRequest) (*backend.QueryDataResponse, error) {
		resp := backend.NewQueryDataResponse()
		for _, q := range req.Queries {
			resp.Responses[q.RefID] = badRequest("unknown queryType %q (want serviceMap, edgeMetrics, impact, changes, drift or deployAnnotations)", q.QueryType)
		}
		return resp, nil
	})
}

// handle registers a handler that gets parsed, validated queries; any error
// stays on its own query.
func (d *Datasource) handle(queryType string, h queryHandler) {
	d.mux.HandleFunc(queryType, func(ctx context.Context, req *backend.QueryDataRequest) (*backend.QueryDataResponse, error) {
		resp := backend.NewQueryDataResponse()
		for _, q := range req.Queries {
			resp.Responses[q.RefID] = d.answer(ctx, q, h)
		}
		return resp, nil
	})
}

func (d *Datasource) answer(ctx context.Context, q backend.DataQuery, h queryHandler) (r backend.DataResponse) {
	defer func() { // a bug in one query must not take the plugin down
		if p := recover(); p != nil {
			d.logger.Error("Query panicked", "refId", q.RefID, "queryType", q.QueryType, "panic", p)
			r = backend.ErrDataResponse(backend.StatusInternal, fmt.Sprintf("internal error answering %s query", q.QueryType))
		}
	}()
	if d.settingErr != nil {
		return backend.ErrDataResponse(backend.StatusBadRequest, d.settingErr.Error())
	}
	var parsed Query
	if len(strings.TrimSpace(string(q.JSON))) > 0 {
		if err := json.Unmarshal(q.JSON, &parsed); err != nil {
			return badRequest("malformed query JSON: %v", err)
		}
	}
	if q.TimeRange.From.IsZero() || q.TimeRange.To.IsZero() {
		return badRequest("empty time range")
	}
	if !q.TimeRange.To.After(q.TimeRange.From) {
		return badRequest("inverted or empty time range: from %s is not before to %s",
			q.TimeRange.From.UTC().Format("2006-01-02T15:04:05Z"), q.TimeRange.To.UTC().Format("2006-01-02T15:04:05Z"))
	}
	return h(ctx, q, parsed)
}

func badRequest(format string, args ...any) backend.DataResponse {
	return backend.ErrDataResponse(backend.StatusBadRequest, fmt.Sprintf(format, args...))
}

// sourceSet parses the query's source filter.
func (q Query) sourceSet() (model.Source, error) { return model.ParseSources(q.Sources) }

// QueryData routes each query by its queryType.
func (d *Datasource) QueryData(ctx context.Context, req *backend.QueryDataRequest) (*backend.QueryDataResponse, error) {
	return d.mux.QueryData(ctx, req)
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

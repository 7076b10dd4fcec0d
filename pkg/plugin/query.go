package plugin

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/backend/datasource"
	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/livemap/servicemap/pkg/model"
)

// Query is the JSON model of every query type (src/types.ts mirrors it).
// validate checks the fields a query type uses before any work is done.
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
	// Frame picks frames of a multi-frame answer (impact, changes, drift):
	// one name or a comma-separated list, so that a dashboard panel shows
	// one table. Empty returns every frame.
	Frame string `json:"frame"`
	// Baseline and Since say what a changes query compares with (see
	// baselinePrevious and friends in query_changes.go).
	Baseline string `json:"baseline"`
	Since    string `json:"since"`

	frames []string  // Frame split and trimmed, set by validate
	since  time.Time // Since parsed, set by validate when Baseline is "since"
}

// framesOf lists, in answer order, the frames of the query types that
// answer with several; only these take the frame field.
var framesOf = map[string][]string{
	"impact":  {"nodes", "edges", "summary", "dependents", "root_cause", "recovery_order"},
	"changes": {"changes", "nodes", "edges"},
	"drift":   {"drift_summary", "drift_edges"},
}

// sinceLayouts are the forms the since field accepts: an RFC3339 time, or
// a plain date meaning midnight UTC.
var sinceLayouts = []string{time.RFC3339, "2006-01-02"}

// validate checks and normalises the fields queryType reads; the error
// names the field.
func (q *Query) validate(queryType string) error {
	q.Service, q.Namespace = strings.TrimSpace(q.Service), strings.TrimSpace(q.Namespace)
	if strings.TrimSpace(q.Frame) != "" {
		known, ok := framesOf[queryType]
		if !ok {
			return fmt.Errorf("frame: a %s query answers with all its frames; the frame field is for impact, changes and drift queries", queryType)
		}
		for _, name := range strings.Split(q.Frame, ",") {
			name = strings.TrimSpace(name)
			if !slices.Contains(known, name) {
				return fmt.Errorf("frame: unknown frame %q (%s returns %s)", name, queryType, strings.Join(known, ", "))
			}
			q.frames = append(q.frames, name)
		}
	}
	if queryType != "changes" {
		return nil
	}
	switch q.Baseline {
	case "", baselinePrevious, baselineLastDeploy:
		// since is ignored: an editor may leave it behind after switching baseline
	case baselineSince:
		text := strings.TrimSpace(q.Since)
		if text == "" {
			return fmt.Errorf("since: baseline %q needs the since field (an RFC3339 time such as 2026-11-23T10:00:00Z)", baselineSince)
		}
		for _, layout := range sinceLayouts {
			if t, err := time.Parse(layout, text); err == nil {
				q.since = t
				return nil
			}
		}
		return fmt.Errorf("since: since must be an RFC3339 time such as 2026-11-23T10:00:00Z or a date such as 2026-11-23, got %q", q.Since)
	default:
		return fmt.Errorf("baseline: unknown baseline %q (want %s, %s or %s)", q.Baseline, baselinePrevious, baselineSince, baselineLastDeploy)
	}
	if q.Baseline == baselineLastDeploy && q.Service == "" {
		return fmt.Errorf("service: baseline %q needs the service field (whose last deploy to compare against)", baselineLastDeploy)
	}
	return nil
}

// depths are the focus depths of the query (default 2 each way).
func (q Query) depths() (up, down int, err error) {
	up, down = 2, 2
	if q.DepthUp != nil {
		up = *q.DepthUp
	}
	if q.DepthDown != nil {
		down = *q.DepthDown
	}
	if up < 0 || up > maxDepth || down < 0 || down > maxDepth {
		return 0, 0, fmt.Errorf("depthUp and depthDown must be 0..%d, got %d and %d", maxDepth, up, down)
	}
	return up, down, nil
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
	if err := parsed.validate(q.QueryType); err != nil {
		return badRequest("%s query: %v", q.QueryType, err)
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

// selectFrames keeps only the frames the query's frame field names, in the
// order it names them (validate checked the names against framesOf).
// Without it every frame is returned.
func selectFrames(q backend.DataQuery, all data.Frames) backend.DataResponse {
	var parsed Query
	_ = json.Unmarshal(q.JSON, &parsed) // already parsed and validated once
	if err := parsed.validate(q.QueryType); err != nil || len(parsed.frames) == 0 {
		return backend.DataResponse{Frames: all}
	}
	byName := make(map[string]*data.Frame, len(all))
	for _, f := range all {
		byName[f.Name] = f
	}
	var out data.Frames
	for _, name := range parsed.frames {
		f, ok := byName[name]
		if !ok { // framesOf and the frames package disagree: a bug, not bad input
			return backend.ErrDataResponse(backend.StatusInternal, fmt.Sprintf("%s query: frame %q missing from the answer", q.QueryType, name))
		}
		out = append(out, f)
	}
	return backend.DataResponse{Frames: out}
}

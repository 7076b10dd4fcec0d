package plugin

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/backend/instancemgmt"
	"github.com/grafana/grafana-plugin-sdk-go/backend/log"
	"github.com/grafana/grafana-plugin-sdk-go/data"
	"github.com/grafana/grafana-plugin-sdk-go/experimental"
	"github.com/grafana/grafana-plugin-sdk-go/experimental/datasourcetest"

	"github.com/livemap/servicemap/internal/testenv/postgres"
	"github.com/livemap/servicemap/pkg/source/traces"
)

// These tests serve the plugin over gRPC exactly as Grafana talks to it
// (experimental/datasourcetest) with a real PostgreSQL behind it.

var update = flag.Bool("update", false, "rewrite golden files")

var testNow = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

type harness struct {
	client   *datasourcetest.TestPluginClient
	settings *backend.DataSourceInstanceSettings
}

// The SDK registers its metrics once per process, so one plugin server
// serves every test; each test gets its own data source instance (by id).
var (
	pluginClient *datasourcetest.TestPluginClient
	nextID       atomic.Int64
)

func TestMain(m *testing.M) {
	flag.Parse()
	log.DefaultLogger = log.NewWithLevel(log.Warn) // the SDK logs every request at debug
	factory := func(ctx context.Context, s backend.DataSourceInstanceSettings) (instancemgmt.Instance, error) {
		return NewDatasourceWithOptions(ctx, s, Options{Now: func() time.Time { return testNow }})
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	tp, err := datasourcetest.Manage(factory, datasourcetest.ManageOpts{Address: addr})
	if err != nil {
		panic(err)
	}
	pluginClient = tp.Client
	code := m.Run()
	_ = tp.Shutdown()
	os.Exit(code)
}

func serve(t *testing.T, jsonData map[string]any, secure map[string]string) *harness {
	t.Helper()
	raw, _ := json.Marshal(jsonData)
	return &harness{client: pluginClient, settings: &backend.DataSourceInstanceSettings{
		ID: nextID.Add(1), UID: "servicemap-uid", Name: "Service map", JSONData: raw, DecryptedSecureJSONData: secure, Updated: testNow,
	}}
}

func (h *harness) ctx() backend.PluginContext {
	return backend.PluginContext{PluginID: PluginID, DataSourceInstanceSettings: h.settings}
}

func (h *harness) query(t *testing.T, queries ...backend.DataQuery) *backend.QueryDataResponse {
	t.Helper()
	resp, err := h.client.QueryData(context.Background(), &backend.QueryDataRequest{PluginContext: h.ctx(), Queries: queries})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func (h *harness) health(t *testing.T) *backend.CheckHealthResult {
	t.Helper()
	r, err := h.client.CheckHealth(context.Background(), &backend.CheckHealthRequest{PluginContext: h.ctx()})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func q(refID, queryType string, from, to time.Time, model string) backend.DataQuery {
	return backend.DataQuery{RefID: refID, QueryType: queryType, TimeRange: backend.TimeRange{From: from, To: to},
		Interval: 10 * time.Minute, MaxDataPoints: 100, JSON: json.RawMessage(model)}
}

// loadShop fills a calls table with a small shop for the last hour:
// user → frontend (120 calls), frontend → checkout (60, 6 failed: 10 %),
// checkout → payments (30, slow: 900 ms), frontend → catalog (90).
func loadShop(t *testing.T) (*postgres.Server, string) {
	pg := postgres.Start(t, postgres.Options{})
	db := pg.CreateDatabase(t, "shop")
	pg.Exec(t, db, traces.CallsDDL)
	conn := pg.Connect(t, db)
	defer conn.Close(context.Background())
	add := func(n int, parent, child string, ms float64, failEvery int) {
		for i := 0; i < n; i++ {
			// spread over the hour, all older than the 60 s grace period
			at := testNow.Add(-time.Hour).Add(time.Duration(i) * 58 * time.Minute / time.Duration(n)).Add(time.Second)
			status := "OK"
			if failEvery > 0 && i%failEvery == 0 {
				status = "ERROR"
			}
			var p any = parent
			if parent == "" {
				p = nil
			}
			if _, err := conn.Exec(context.Background(), `INSERT INTO calls VALUES ($1,$2,$3,$4,$5)`, at, p, child, ms, status); err != nil {
				t.Fatal(err)
			}
		}
	}
	add(120, "", "frontend", 40, 0)
	add(60, "frontend", "checkout", 120, 10)
	add(30, "checkout", "payments", 900, 0)
	add(90, "frontend", "catalog", 15, 0)
	return pg, db
}

func shopSettings(pg *postgres.Server, db string) (map[string]any, map[string]string) {
	return map[string]any{
			"host": pg.Addr, "database": db, "user": pg.User, "sslMode": "disable", "tableShape": "calls",
			"slo":       map[string]any{"errorRate": 0.01, "p99LatencyMs": 500},
			"traceLink": map[string]any{"type": "tempo", "datasourceUid": "tempo-uid"},
		},
		map[string]string{"password": pg.Password}
}

// waitForData polls CheckHealth until the trace source reports a refresh.
func waitForData(t *testing.T, h *harness) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		r := h.health(t)
		if r.Status == backend.HealthStatusOk && strings.Contains(r.Message, "last refresh") {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("trace source never refreshed: %+v", h.health(t))
}

// shopPlugin serves the plugin on a freshly loaded shop (shopSettings plus
// extra jsonData) and waits until the trace source has read it.
func shopPlugin(t *testing.T, extra map[string]any) *harness {
	t.Helper()
	pg, db := loadShop(t)
	js, sec := shopSettings(pg, db)
	maps.Copy(js, extra)
	h := serve(t, js, sec)
	waitForData(t, h)
	return h
}

func TestServiceMapThroughPluginProtocol(t *testing.T) {
	h := shopPlugin(t, nil)

	resp := h.query(t, q("A", "serviceMap", testNow.Add(-time.Hour), testNow, `{}`))
	dr := resp.Responses["A"]
	if dr.Error != nil {
		t.Fatal(dr.Error)
	}
	experimental.CheckGoldenJSONResponse(t, "testdata", "servicemap", &dr, *update)

	nodes, edges := dr.Frames[0], dr.Frames[1]
	if nodes.Meta.PreferredVisualization != data.VisTypeNodeGraph || edges.Meta.PreferredVisualization != data.VisTypeNodeGraph {
		t.Fatalf("frames are not node graph frames")
	}
	// rates over the one-hour range, error rates, health colours
	if got := cell(t, edges, "mainstat", "frontend->checkout").(float64); got != 60.0/3600 {
		t.Errorf("frontend->checkout rps %v", got)
	}
	if got := cell(t, edges, "detail__error_rate", "frontend->checkout").(float64); got != 0.1 {
		t.Errorf("frontend->checkout error rate %v", got)
	}
	if got := cell(t, edges, "color", "frontend->checkout"); got != "#F2495C" {
		t.Errorf("10 %% errors should be red, got %v", got)
	}
	if got := cell(t, edges, "color", "checkout->payments"); got != "#F2495C" {
		t.Errorf("p99 900 ms over a 500 ms SLO should be red, got %v", got)
	}
	if got := cell(t, edges, "color", "frontend->catalog"); got != "#73BF69" {
		t.Errorf("healthy edge should be green, got %v", got)
	}
	if got := cell(t, nodes, "arc__errors", "checkout").(float64); got != 0.1 {
		t.Errorf("checkout error arc %v", got)
	}
	if got := cell(t, nodes, "arc__success", "catalog").(float64); got != 1 {
		t.Errorf("catalog success arc %v", got)
	}
}

func TestFocusAndDepth(t *testing.T) {
	h := shopPlugin(t, nil)
	for _, tc := range []struct {
		model string
		want  string
	}{
		{`{"service":"checkout","depthUp":1,"depthDown":0}`, "checkout,frontend"},
		{`{"service":"checkout","depthUp":0,"depthDown":1}`, "checkout,payments"},
		{`{"service":"checkout"}`, "checkout,frontend,payments,user"}, // catalog is a sibling, neither caller nor callee
		{`{"service":"catalog","depthUp":1,"depthDown":1}`, "catalog,frontend"},
		{`{"service":"nope"}`, ""},
	} {
		dr := h.query(t, q("A", "serviceMap", testNow.Add(-time.Hour), testNow, tc.model)).Responses["A"]
		if dr.Error != nil {
			t.Fatal(dr.Error)
		}
		ids, _ := dr.Frames[0].FieldByName("id")
		var got []string
		for i := 0; i < ids.Len(); i++ {
			got = append(got, ids.At(i).(string))
		}
		if strings.Join(got, ",") != tc.want {
			t.Errorf("%s: nodes %v, want %s", tc.model, got, tc.want)
		}
	}
}

func TestEdgeMetricsForAlerting(t *testing.T) {
	h := shopPlugin(t, nil)
	resp := h.query(t,
		q("N", "edgeMetrics", testNow.Add(-time.Hour), testNow, `{"metric":"error_rate","format":"numeric"}`),
		q("T", "edgeMetrics", testNow.Add(-time.Hour), testNow, `{"metric":"requests_per_second","format":"timeseries"}`),
	)
	num := resp.Responses["N"]
	if num.Error != nil {
		t.Fatal(num.Error)
	}
	experimental.CheckGoldenJSONResponse(t, "testdata", "edgemetrics-numeric", &num, *update)
	f := num.Frames[0]
	if f.Meta.Type != data.FrameTypeNumericWide || f.Rows() != 1 || len(f.Fields) != 4 {
		t.Fatalf("numeric frame: type %s, %d rows, %d fields", f.Meta.Type, f.Rows(), len(f.Fields))
	}
	// one alert instance per edge: distinct label sets, source and target set
	seen := map[string]bool{}
	firing := 0
	for _, fld := range f.Fields {
		key := fld.Labels.String()
		if seen[key] || fld.Labels["source"] == "" || fld.Labels["target"] == "" {
			t.Errorf("bad or duplicate labels %s", key)
		}
		seen[key] = true
		if v, ok := fld.ConcreteAt(0); ok && v.(float64) > 0.01 {
			firing++
			if fld.Labels["target"] != "checkout" {
				t.Errorf("unexpected firing edge %s", key)
			}
		}
	}
	if firing != 1 {
		t.Errorf("error_rate > 0.01 fires for %d edges, want 1 (frontend->checkout)", firing)
	}
	ts := resp.Responses["T"]
	if ts.Error != nil {
		t.Fatal(ts.Error)
	}
	tf := ts.Frames[0]
	if tf.Meta.Type != data.FrameTypeTimeSeriesWide || tf.Rows() != 6 || len(tf.Fields) != 5 {
		t.Fatalf("time series frame: type %s, %d rows, %d fields", tf.Meta.Type, tf.Rows(), len(tf.Fields))
	}
	// the sum over windows equals the calls: 10-minute windows of the user->frontend edge
	for _, fld := range tf.Fields[1:] {
		if fld.Labels["target"] != "frontend" {
			continue
		}
		total := 0.0
		for i := 0; i < fld.Len(); i++ {
			v, _ := fld.ConcreteAt(i)
			total += v.(float64) * 600
		}
		if fmt.Sprintf("%.6f", total) != "120.000000" {
			t.Errorf("user->frontend calls over windows %v, want 120", total)
		}
	}
}

func TestBadInputStaysOnItsQuery(t *testing.T) {
	h := shopPlugin(t, nil)
	resp := h.query(t,
		q("good", "serviceMap", testNow.Add(-time.Hour), testNow, `{}`),
		q("unknown", "drawMeASheep", testNow.Add(-time.Hour), testNow, `{}`),
		q("malformed", "serviceMap", testNow.Add(-time.Hour), testNow, `{"depthUp": "two"`),
		q("inverted", "serviceMap", testNow, testNow.Add(-time.Hour), `{}`),
		q("empty", "edgeMetrics", testNow, testNow, `{}`),
		q("metric", "edgeMetrics", testNow.Add(-time.Hour), testNow, `{"metric":"latency"}`),
		q("format", "edgeMetrics", testNow.Add(-time.Hour), testNow, `{"format":"table"}`),
		q("depth", "serviceMap", testNow.Add(-time.Hour), testNow, `{"service":"a","depthUp":99}`),
		q("source", "serviceMap", testNow.Add(-time.Hour), testNow, `{"sources":["dns"]}`),
	)
	if resp.Responses["good"].Error != nil || len(resp.Responses["good"].Frames) != 2 {
		t.Fatalf("the good query suffered: %v", resp.Responses["good"].Error)
	}
	for ref, want := range map[string]string{
		"unknown":   `unknown queryType "drawMeASheep"`,
		"malformed": "malformed query JSON",
		"inverted":  "inverted or empty time range",
		"empty":     "inverted or empty time range",
		"metric":    `unknown metric "latency"`,
		"format":    `unknown format "table"`,
		"depth":     "depthUp and depthDown must be 0..10",
		"source":    `unknown source "dns"`,
	} {
		r := resp.Responses[ref]
		if r.Error == nil || !strings.Contains(r.Error.Error(), want) {
			t.Errorf("%s: error %v, want %q", ref, r.Error, want)
		}
		if r.Status != backend.StatusBadRequest {
			t.Errorf("%s: status %v, want 400", ref, r.Status)
		}
	}
}

func TestMalformedSettingsAnswerEverywhere(t *testing.T) {
	h := serve(t, map[string]any{"host": "db:5432", "database": "x", "user": "u", "sslMode": "sometimes"}, nil)
	r := h.health(t)
	if r.Status != backend.HealthStatusError || !strings.Contains(r.Message, "sslMode") {
		t.Errorf("health %+v", r)
	}
	dr := h.query(t, q("A", "serviceMap", testNow.Add(-time.Hour), testNow, `{}`)).Responses["A"]
	if dr.Error == nil || !strings.Contains(dr.Error.Error(), "sslMode") {
		t.Errorf("query error %v", dr.Error)
	}
	// and the plugin is still alive for a good data source afterwards
	h.settings.JSONData = []byte(`{}`)
	h.settings.Updated = testNow.Add(time.Second)
	if r := h.health(t); r.Status != backend.HealthStatusError || !strings.Contains(r.Message, "no source configured") {
		t.Errorf("health after fixing settings %+v", r)
	}
}

func TestHealthNamesMissingTableAndStaleSource(t *testing.T) {
	pg := postgres.Start(t, postgres.Options{})
	db := pg.CreateDatabase(t, "empty")
	js := map[string]any{"host": pg.Addr, "database": db, "user": pg.User, "sslMode": "disable", "tableShape": "spans"}
	h := serve(t, js, map[string]string{"password": pg.Password})
	deadline := time.Now().Add(20 * time.Second)
	var r *backend.CheckHealthResult
	for time.Now().Before(deadline) {
		r = h.health(t)
		if strings.Contains(r.Message, "failing since") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if r.Status != backend.HealthStatusError || !strings.Contains(r.Message, `table "spans" not found`) || !strings.Contains(r.Message, "failing since") {
		t.Fatalf("health %+v", r)
	}
	dr := h.query(t, q("A", "serviceMap", testNow.Add(-time.Hour), testNow, `{}`)).Responses["A"]
	if dr.Error != nil || len(dr.Frames[0].Meta.Notices) != 1 || !strings.Contains(dr.Frames[0].Meta.Notices[0].Text, "traces source is stale since") {
		t.Fatalf("stale notice missing: %+v", dr)
	}
}

func TestServicesResource(t *testing.T) {
	h := shopPlugin(t, nil)
	var got []*backend.CallResourceResponse
	err := h.client.CallResource(context.Background(), &backend.CallResourceRequest{PluginContext: h.ctx(), Path: "services", Method: "GET", URL: "services"},
		backend.CallResourceResponseSenderFunc(func(r *backend.CallResourceResponse) error { got = append(got, r); return nil }))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Status != 200 {
		t.Fatalf("responses %+v", got)
	}
	var body struct {
		Services []struct{ Name, Kind string }
	}
	if err := json.Unmarshal(got[0].Body, &body); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range body.Services {
		names = append(names, s.Name)
	}
	if strings.Join(names, ",") != "catalog,checkout,frontend,payments,user" {
		t.Errorf("services %v", names)
	}
}

// cell reads one field of the row with the given id.
func cell(t *testing.T, f *data.Frame, field, id string) any {
	t.Helper()
	ids, _ := f.FieldByName("id")
	fld, _ := f.FieldByName(field)
	if fld == nil {
		t.Fatalf("%s has no field %s", f.Name, field)
	}
	for i := 0; i < ids.Len(); i++ {
		if ids.At(i).(string) == id {
			v, _ := fld.ConcreteAt(i)
			return v
		}
	}
	t.Fatalf("no row %s in %s", id, f.Name)
	return nil
}

// rowsByID reads the named fields of every row of a frame with an id field.
func rowsByID(t *testing.T, f *data.Frame, fields ...string) map[string][]any {
	t.Helper()
	ids, _ := f.FieldByName("id")
	out := map[string][]any{}
	for i := 0; i < ids.Len(); i++ {
		row := make([]any, len(fields))
		for j, name := range fields {
			fld, _ := f.FieldByName(name)
			if fld == nil {
				t.Fatalf("%s has no field %s", f.Name, name)
			}
			row[j], _ = fld.ConcreteAt(i)
		}
		out[ids.At(i).(string)] = row
	}
	return out
}

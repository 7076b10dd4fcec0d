// Command servicemap-demo is the quick start: it loads a sample shop's
// traces into a throwaway PostgreSQL, serves the plugin over the real plugin
// protocol (as Grafana would talk to it) and prints the service map and the
// per-edge alert series it answers with.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/backend/instancemgmt"
	"github.com/grafana/grafana-plugin-sdk-go/backend/log"
	"github.com/grafana/grafana-plugin-sdk-go/data"
	"github.com/grafana/grafana-plugin-sdk-go/experimental/datasourcetest"
	"github.com/jackc/pgx/v5"

	"github.com/livemap/servicemap/internal/testenv/postgres"
	"github.com/livemap/servicemap/pkg/plugin"
	"github.com/livemap/servicemap/pkg/source/gateway"
	"github.com/livemap/servicemap/pkg/source/traces"
)

// runner satisfies the harness's test interface for a plain program.
type runner struct{ cleanups []func() }

func (r *runner) Helper()                         {}
func (r *runner) Logf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
func (r *runner) Cleanup(f func())                { r.cleanups = append(r.cleanups, f) }
func (r *runner) Fatal(args ...any)               { r.Fatalf("%s", fmt.Sprint(args...)) }
func (r *runner) Fatalf(format string, args ...any) {
	r.stop()
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}
func (r *runner) stop() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
	r.cleanups = nil
}

// call is one hop of the sample shop: caller → callee with its latency and
// failure rate.
type call struct {
	caller, callee string
	kind           string // protocol attributes
	medianMs       float64
	failRate       float64
}

var shop = []call{
	{"", "web-frontend", "http", 45, 0.002},
	{"web-frontend", "cart", "grpc", 12, 0.001},
	{"web-frontend", "catalog", "grpc", 8, 0.0},
	{"web-frontend", "checkout", "grpc", 90, 0.004},
	{"checkout", "payments", "grpc", 240, 0.03}, // the troubled one
	{"checkout", "inventory", "grpc", 15, 0.0},
	{"checkout", "kafka:orders", "kafka", 3, 0.0},
	{"payments", "stripe", "http", 180, 0.01},
	{"cart", "redis", "redis", 1, 0.0},
	{"inventory", "postgresql:inventory", "db", 4, 0.0},
	{"catalog", "postgresql:catalog", "db", 6, 0.0},
}

func main() {
	log.DefaultLogger = log.NewWithLevel(log.Warn) // the SDK logs every request at debug
	backend.Logger = log.DefaultLogger
	r := &runner{}
	defer r.stop()
	now := time.Now().UTC()
	fmt.Println("Starting a throwaway PostgreSQL ...")
	pg := postgres.Start(r, postgres.Options{})
	db := pg.CreateDatabase(r, "demo")
	pg.Exec(r, db, traces.SpansDDL)
	n := loadSpans(r, pg, db, now)
	pg.Exec(r, db, gateway.TableDDL)
	users := loadAccessLog(r, pg, db, now)
	fmt.Printf("Loaded %d spans (one hour of a sample shop) into table spans,\n"+
		"and the gateway's access log of the same 3,000 requests (%d distinct users) into table gateway_logs.\n\n", n, users)

	factory := func(ctx context.Context, s backend.DataSourceInstanceSettings) (instancemgmt.Instance, error) {
		return plugin.NewDatasourceWithOptions(ctx, s, plugin.Options{})
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		r.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	tp, err := datasourcetest.Manage(factory, datasourcetest.ManageOpts{Address: addr})
	if err != nil {
		r.Fatal(err)
	}
	defer func() { _ = tp.Shutdown() }()
	js, _ := json.Marshal(map[string]any{"host": pg.Addr, "database": db, "user": pg.User, "sslMode": "disable",
		"tableShape": "spans", "gracePeriodSeconds": 5, "slo": map[string]any{"errorRate": 0.01, "p99LatencyMs": 500},
		"gateway": map[string]any{"enabled": true}})
	pctx := backend.PluginContext{PluginID: plugin.PluginID, DataSourceInstanceSettings: &backend.DataSourceInstanceSettings{
		ID: 1, UID: "servicemap", Name: "Service map", JSONData: js, DecryptedSecureJSONData: map[string]string{"password": pg.Password}}}
	ctx := context.Background()
	var health *backend.CheckHealthResult
	for i := 0; i < 300; i++ {
		health, err = tp.Client.CheckHealth(ctx, &backend.CheckHealthRequest{PluginContext: pctx})
		if err == nil && strings.Contains(health.Message, "traces: last refresh") && strings.Contains(health.Message, "gateway: last refresh") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if health == nil {
		r.Fatalf("no health answer: %v", err)
	}
	fmt.Printf("CheckHealth: %s — %s\n\n", health.Status, health.Message)
	rng := backend.TimeRange{From: now.Add(-time.Hour), To: now}
	resp, err := tp.Client.QueryData(ctx, &backend.QueryDataRequest{PluginContext: pctx, Queries: []backend.DataQuery{
		{RefID: "map", QueryType: "serviceMap", TimeRange: rng, JSON: []byte(`{}`)},
		{RefID: "alert", QueryType: "edgeMetrics", TimeRange: rng, JSON: []byte(`{"metric":"error_rate","format":"numeric"}`)},
		{RefID: "impact", QueryType: "impact", TimeRange: rng, JSON: []byte(`{"service":"payments","frame":"summary,recovery_order"}`)},
	}})
	if err != nil {
		r.Fatal(err)
	}
	for _, ref := range []string{"map", "alert", "impact"} {
		if e := resp.Responses[ref].Error; e != nil {
			r.Fatalf("%s query failed: %v", ref, e)
		}
	}
	frames := resp.Responses["map"].Frames
	printNodes(frames[0])
	printEdges(frames[1])
	printAlert(resp.Responses["alert"].Frames[0])
	printImpact(resp.Responses["impact"].Frames)
}

// loadAccessLog writes the gateway's view of the shop's entry traffic: the
// same 3,000 requests to web-frontend, from 800 users (some twice or more),
// and returns how many distinct users there were.
func loadAccessLog(r *runner, pg *postgres.Server, db string, now time.Time) int {
	conn := pg.Connect(r, db)
	defer conn.Close(context.Background())
	rnd := rand.New(rand.NewPCG(3, 5))
	seen := map[int]bool{}
	var rows [][]any
	for i := 0; i < 3000; i++ {
		at := now.Add(-time.Hour).Add(time.Duration(i) * 59 * time.Minute / 3000)
		u := rnd.IntN(800)
		seen[u] = true
		status := 200
		if rnd.Float64() < 0.001 {
			status = 503
		}
		rows = append(rows, []any{at, fmt.Sprintf("198.51.100.%d", u%250), fmt.Sprintf("user-%d", u), nil,
			"web-frontend.shop.svc.cluster.local:8080", status, 140 * math.Exp(0.5*rnd.NormFloat64()), "http", nil})
	}
	_, err := conn.CopyFrom(context.Background(), pgx.Identifier{"gateway_logs"},
		[]string{"time", "client", "client_key", "caller", "service", "status", "duration_ms", "protocol", "grpc_status"},
		pgx.CopyFromRows(rows))
	if err != nil {
		r.Fatal(err)
	}
	return len(seen)
}

func printImpact(frames data.Frames) {
	summary, recovery := frames[0], frames[1]
	fmt.Println("\nIMPACT of payments (the incident view)")
	for _, f := range []struct{ label, field string }{
		{"scope", "summary"}, {"root cause", "root_cause"}, {"blast radius", "blast_radius"},
	} {
		fmt.Printf("  %-13s %s\n", f.label+":", str(summary, f.field, 0))
	}
	fmt.Println()
	printTable("RECOVERY ORDER (dependencies first)", recovery, []column{
		{"step", "step", 4}, {"services", "services", -40}, {"label", "label", -30}})
}

func loadSpans(r *runner, pg *postgres.Server, db string, now time.Time) int {
	conn := pg.Connect(r, db)
	defer conn.Close(context.Background())
	rnd := rand.New(rand.NewPCG(7, 11))
	var rows [][]any
	spanID := 0
	nextID := func() string { spanID++; return fmt.Sprintf("%016x", spanID) }
	children := map[string][]call{}
	for _, c := range shop {
		children[c.caller] = append(children[c.caller], c)
	}
	var walk func(trace, parent, service string, at time.Time, c call)
	walk = func(trace, parent, service string, at time.Time, c call) {
		ms := c.medianMs * math.Exp(0.5*rnd.NormFloat64())
		status := "STATUS_CODE_OK"
		if rnd.Float64() < c.failRate {
			status = "STATUS_CODE_ERROR"
		}
		attrs := map[string]string{}
		switch c.kind {
		case "grpc":
			attrs["rpc.system"] = "grpc"
		case "http":
			attrs["http.request.method"] = "GET"
		case "kafka":
			attrs["messaging.system"] = "kafka"
			attrs["messaging.destination.name"] = "orders"
		case "redis":
			attrs["db.system"] = "redis"
			attrs["server.address"] = "redis.shop"
		case "db":
			attrs["db.system"] = "postgresql"
			attrs["db.namespace"] = strings.TrimPrefix(c.callee, "postgresql:")
			attrs["server.address"] = "pg.shop"
		}
		a, _ := json.Marshal(attrs)
		_, virtual := map[string]bool{"kafka": true, "redis": true, "db": true}[c.kind]
		virtual = virtual || c.callee == "stripe"
		if c.callee == "stripe" {
			a, _ = json.Marshal(map[string]string{"peer.service": "stripe", "http.request.method": "POST"})
		}
		serverID := ""
		if parent == "" { // root: the entry SERVER span
			serverID = nextID()
			rows = append(rows, []any{trace, serverID, nil, c.callee, "GET /", "SPAN_KIND_SERVER", at, int64(ms * 1e6), status, string(a), "{}"})
		} else {
			clientID := nextID()
			kind := "SPAN_KIND_CLIENT"
			if c.kind == "kafka" {
				kind = "SPAN_KIND_PRODUCER"
			}
			rows = append(rows, []any{trace, clientID, parent, service, "call " + c.callee, kind, at, int64(ms * 1e6), status, string(a), "{}"})
			if virtual {
				return
			}
			serverID = nextID()
			rows = append(rows, []any{trace, serverID, clientID, c.callee, "handle", "SPAN_KIND_SERVER", at.Add(time.Millisecond), int64(ms * 0.9e6), status, string(a), "{}"})
		}
		for _, child := range children[c.callee] {
			walk(trace, serverID, c.callee, at.Add(2*time.Millisecond), child)
		}
	}
	for i := 0; i < 3000; i++ { // 3,000 requests over the hour, the newest a minute old
		at := now.Add(-time.Hour).Add(time.Duration(i) * 59 * time.Minute / 3000)
		walk(fmt.Sprintf("%032x", i+1), "", "", at, shop[0])
	}
	_, err := conn.CopyFrom(context.Background(), pgx.Identifier{"spans"},
		[]string{"trace_id", "span_id", "parent_span_id", "service_name", "span_name", "span_kind", "start_time", "duration_ns", "status_code", "attributes", "resource_attributes"},
		pgx.CopyFromRows(rows))
	if err != nil {
		r.Fatal(err)
	}
	return len(rows)
}

func str(f *data.Frame, name string, i int) string {
	fld, _ := f.FieldByName(name)
	if fld == nil {
		return ""
	}
	v, ok := fld.ConcreteAt(i)
	if !ok {
		return "-"
	}
	switch x := v.(type) {
	case float64:
		return fmt.Sprintf("%.4g", x)
	default:
		return fmt.Sprint(x)
	}
}

// column is one printed column: a header, the frame field and a width
// (negative: left-aligned).
type column struct {
	header, field string
	width         int
}

func printTable(title string, f *data.Frame, cols []column) {
	fmt.Println(title)
	for _, c := range cols {
		fmt.Printf("%*s ", c.width, c.header)
	}
	fmt.Println()
	for i := 0; i < f.Rows(); i++ {
		for _, c := range cols {
			fmt.Printf("%*s ", c.width, str(f, c.field, i))
		}
		fmt.Println()
	}
	fmt.Println()
}

func printNodes(f *data.Frame) {
	printTable("NODES (what the Node Graph panel draws)", f, []column{
		{"service", "id", -28}, {"kind", "detail__kind", -10}, {"req/s", "mainstat", 10},
		{"p99 ms", "secondarystat", 10}, {"errors", "detail__error_rate", 9}, {"health", "detail__health", -8}})
}

func printEdges(f *data.Frame) {
	printTable("EDGES", f, []column{
		{"caller -> callee", "id", -50}, {"protocol", "detail__protocol", -10}, {"req/s", "mainstat", 8},
		{"errors", "detail__error_rate", 9}, {"p99 ms", "detail__p99_latency_ms", 9}, {"health", "detail__health", -8}})
}

func printAlert(f *data.Frame) {
	fmt.Println("ALERT SERIES (edgeMetrics error_rate, numeric-wide: one alert instance per edge; rule: > 0.01)")
	for _, fld := range f.Fields {
		v, ok := fld.ConcreteAt(0)
		val, firing := "no calls", ""
		if ok {
			val = fmt.Sprintf("%.4f", v.(float64))
			if v.(float64) > 0.01 {
				firing = "  FIRING"
			}
		}
		fmt.Printf("  %-60s %s%s\n", fld.Labels.String(), val, firing)
	}
}

package plugin

import (
	"context"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/jackc/pgx/v5"

	"github.com/livemap/servicemap/internal/testenv/postgres"
	"github.com/livemap/servicemap/pkg/analysis"
	"github.com/livemap/servicemap/pkg/source/gateway"
)

// The gateway's SQL-table path, end to end through the plugin protocol on a
// real PostgreSQL: the shop's traces (loadShop) plus an access-log table
// with a known set of clients entering through known entry points.
//
//	frontend: users u0..u299 (client_key), each twice, via the Kubernetes DNS
//	          name "frontend.shop.svc.cluster.local:8080"; plus 5 partner
//	          addresses 203.0.113.1..5 (no client_key) named by a CIDR rule
//	admin:    users u250..u279 (also frontend users) and a0..a9, once each,
//	          plus 9 more requests by a0: 4 × 503, 3 × 404, 2 × gRPC 14
//	          (errors: 6 of 49; 404 is not an error)
//
// Distinct clients: frontend 305, admin 40, all 315. The traces add
// admin → catalog, so admin's traffic reaches catalog but not payments.
const (
	frontendClients = 305
	adminClients    = 40
	allClients      = 315
)

func loadGateway(t *testing.T, pg *postgres.Server, db string) {
	t.Helper()
	pg.Exec(t, db, gateway.TableDDL)
	conn := pg.Connect(t, db)
	defer conn.Close(context.Background())
	base := testNow.Add(-50 * time.Minute) // inside the last hour, past the grace period
	var rows [][]any
	add := func(i int, client string, key any, caller any, service string, status int, protocol any, grpc any) {
		at := base.Add(time.Duration(i%45) * time.Minute).Add(time.Duration(i%60) * time.Second)
		rows = append(rows, []any{at, client, key, caller, service, status, 12.5, protocol, grpc})
	}
	for round := 0; round < 2; round++ {
		for u := 0; u < 300; u++ {
			add(u+round*7, fmt.Sprintf("198.51.100.%d:40000", u%250), fmt.Sprintf("u%d", u), nil, "frontend.shop.svc.cluster.local:8080", 200, "http", nil)
		}
	}
	for p := 1; p <= 5; p++ {
		add(p, fmt.Sprintf("203.0.113.%d", p), nil, nil, "frontend:8080", 200, "http", nil)
	}
	for u := 250; u < 280; u++ {
		add(u, "198.51.100.7", fmt.Sprintf("u%d", u), nil, "admin", 200, "http", nil)
	}
	for a := 0; a < 10; a++ {
		add(a, "198.51.100.8", fmt.Sprintf("a%d", a), nil, "admin", 200, "http", nil)
	}
	for i, st := range []int{503, 503, 503, 503, 404, 404, 404} {
		add(i, "198.51.100.8", "a0", nil, "admin", st, "http", nil)
	}
	add(1, "198.51.100.8", "a0", nil, "admin", 200, "http", 14)
	add(2, "198.51.100.8", "a0", nil, "admin", 200, "http", 14)
	if _, err := conn.CopyFrom(context.Background(), pgx.Identifier{"gateway_logs"},
		[]string{"time", "client", "client_key", "caller", "service", "status", "duration_ms", "protocol", "grpc_status"}, pgx.CopyFromRows(rows)); err != nil {
		t.Fatal(err)
	}
	pg.Exec(t, db, `INSERT INTO calls VALUES ($1, 'admin', 'catalog', 8, 'OK')`, testNow.Add(-30*time.Minute))
}

func gatewaySettings(pg *postgres.Server, db string) (map[string]any, map[string]string) {
	js, sec := shopSettings(pg, db)
	js["gateway"] = map[string]any{"enabled": true, "callerCidrs": []map[string]string{{"name": "partner", "cidr": "203.0.113.0/24"}}}
	return js, sec
}

// waitForSources polls CheckHealth until every named source has refreshed.
func waitForSources(t *testing.T, h *harness, sources ...string) *backend.CheckHealthResult {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		r := h.health(t)
		done := r.Status == backend.HealthStatusOk
		for _, s := range sources {
			done = done && strings.Contains(r.Message, s+": last refresh")
		}
		if done {
			return r
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("sources %v never refreshed: %+v", sources, h.health(t))
	return nil
}

var blastSummary = regexp.MustCompile(`^(\d+) distinct external clients? \(([\d.]+) % of all entry clients\) reach(?:es)? (\S+) through (\d+) entry points?$`)

func blastOf(t *testing.T, h *harness, service string) string {
	t.Helper()
	dr := h.query(t, q("A", "impact", testNow.Add(-time.Hour), testNow, `{"service":"`+service+`","frame":"summary"}`)).Responses["A"]
	if dr.Error != nil {
		t.Fatal(dr.Error)
	}
	f, _ := dr.Frames[0].FieldByName("blast_radius")
	return f.At(0).(string)
}

// near: within 2 % (HyperLogLog precision 14 is far better than that at
// these sizes; the sparse form is nearly exact).
func near(got float64, want float64) bool { return math.Abs(got-want) <= math.Max(1, 0.02*want) }

func TestGatewayBlastRadiusThroughPlugin(t *testing.T) {
	pg, db := loadShop(t)
	loadGateway(t, pg, db)
	js, sec := gatewaySettings(pg, db)
	h := serve(t, js, sec)
	health := waitForSources(t, h, "traces", "gateway")
	if !strings.Contains(health.Message, "table gateway_logs: read up to") || !strings.Contains(health.Message, fmt.Sprintf("%d requests, 0 rows without service or status skipped, 0 without a client key", 600+5+40+9)) {
		t.Errorf("health does not report the gateway table's progress: %s", health.Message)
	}

	for _, tc := range []struct {
		service        string
		users, entries int
	}{
		{"payments", frontendClients, 1}, // only frontend's traffic reaches payments
		{"checkout", frontendClients, 1}, // likewise
		{"catalog", allClients, 2},       // frontend and admin both call catalog
		{"admin", adminClients, 1},       // an entry point itself
		{"frontend", frontendClients, 1}, // partner and users both enter here
	} {
		s := blastOf(t, h, tc.service)
		m := blastSummary.FindStringSubmatch(s)
		if m == nil {
			t.Errorf("%s: blast radius %q is not a count", tc.service, s)
			continue
		}
		users, _ := strconv.Atoi(m[1])
		share, _ := strconv.ParseFloat(m[2], 64)
		entries, _ := strconv.Atoi(m[4])
		if !near(float64(users), float64(tc.users)) || math.Abs(share-100*float64(tc.users)/allClients) > 2 || m[3] != tc.service || entries != tc.entries {
			t.Errorf("%s: %q, want %d users (%.1f %%) through %d entry points", tc.service, s, tc.users, 100*float64(tc.users)/allClients, tc.entries)
		}
	}

	// The same numbers in full (entries, total) from the same store the
	// plugin serves from: an instance built with the same settings.
	d := directInstance(t, js, sec)
	from, to := testNow.Add(-time.Hour), testNow
	g, err := d.wholeGraph(from, to, Query{})
	if err != nil {
		t.Fatal(err)
	}
	r := analysis.BlastRadius(g, "payments", entryClients(d.store.EntryClients(from, to)))
	if !r.Known || !slices.Equal(r.Entries, []string{"frontend"}) || !near(float64(r.Users), frontendClients) || !near(float64(r.Total), allClients) ||
		math.Abs(r.Share-float64(frontendClients)/allClients) > 0.01 {
		t.Errorf("payments blast radius %+v", r)
	}
	r = analysis.BlastRadius(g, "catalog", entryClients(d.store.EntryClients(from, to)))
	if !slices.Equal(r.Entries, []string{"admin", "frontend"}) || !near(float64(r.Users), allClients) || r.Share != 1 {
		t.Errorf("catalog blast radius %+v", r)
	}

	// The map: the entry edge seen by traces and the gateway names both; the
	// gateway-only edge has the gateway's calls, errors (5xx and gRPC ≠ 0,
	// not 404) and protocol; callers have their kinds.
	dr := h.query(t, q("M", "serviceMap", from, to, `{}`)).Responses["M"]
	if dr.Error != nil {
		t.Fatal(dr.Error)
	}
	nodes, edges := dr.Frames[0], dr.Frames[1]
	if got := cell(t, edges, "detail__sources", "user->frontend"); got != "traces,gateway" {
		t.Errorf("user->frontend sources %v, want traces,gateway", got)
	}
	if got := cell(t, edges, "mainstat", "user->frontend").(float64); got != 120.0/3600 {
		t.Errorf("user->frontend rps %v: calls must come from traces (joined, not summed)", got)
	}
	if got := cell(t, edges, "detail__sources", "user->admin"); got != "gateway" {
		t.Errorf("user->admin sources %v", got)
	}
	if got := cell(t, edges, "detail__error_rate", "user->admin").(float64); got != 6.0/49 {
		t.Errorf("user->admin error rate %v, want 6/49", got)
	}
	if got := cell(t, edges, "detail__protocol", "user->admin"); got != "HTTP" {
		t.Errorf("user->admin protocol %v", got)
	}
	if got := cell(t, edges, "detail__sources", "partner->frontend"); got != "gateway" {
		t.Errorf("partner->frontend sources %v", got)
	}
	if got := cell(t, edges, "mainstat", "partner->frontend").(float64); got != 5.0/3600 {
		t.Errorf("partner->frontend rps %v", got)
	}
	if got := cell(t, nodes, "detail__kind", "partner"); got != "external" {
		t.Errorf("partner kind %v", got)
	}
	ids, _ := nodes.FieldByName("id")
	for i := 0; i < ids.Len(); i++ {
		if id := ids.At(i).(string); strings.Contains(id, ".svc") || strings.Contains(id, ":") {
			t.Errorf("node %q keeps a DNS suffix or port", id)
		}
	}
}

func TestBlastRadiusWithoutGatewayData(t *testing.T) {
	pg, db := loadShop(t)
	js, sec := shopSettings(pg, db)
	h := serve(t, js, sec)
	waitForData(t, h)
	if got := blastOf(t, h, "payments"); got != analysis.NoGatewayData {
		t.Errorf("without a gateway source: %q", got)
	}
	// gateway enabled, table empty: still no data, never a guess of zero users
	pg.Exec(t, db, gateway.TableDDL)
	js2, sec2 := gatewaySettings(pg, db)
	h2 := serve(t, js2, sec2)
	waitForSources(t, h2, "traces", "gateway")
	if got := blastOf(t, h2, "payments"); got != analysis.NoGatewayData {
		t.Errorf("with an empty gateway table: %q", got)
	}
}

func TestGatewayTableMissingIsNamed(t *testing.T) {
	pg, db := loadShop(t)
	js, sec := gatewaySettings(pg, db)
	js["gateway"].(map[string]any)["table"] = "access_logs"
	h := serve(t, js, sec)
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := h.health(t)
		if r.Status == backend.HealthStatusError && strings.Contains(r.Message, `gateway: table "access_logs" not found`) &&
			strings.Contains(r.Message, "gateway: no successful refresh yet; failing since") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("health %+v", r)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// queries still answer, with a stale notice naming the gateway source
	dr := h.query(t, q("A", "serviceMap", testNow.Add(-time.Hour), testNow, `{}`)).Responses["A"]
	if dr.Error != nil {
		t.Fatal(dr.Error)
	}
	found := false
	for _, n := range dr.Frames[0].Meta.Notices {
		found = found || strings.HasPrefix(n.Text, "gateway source is stale since")
	}
	if !found {
		t.Errorf("no stale notice for the gateway: %+v", dr.Frames[0].Meta.Notices)
	}
}

// directInstance builds a data source in-process (not over gRPC) with the
// same settings, waits for its first refreshes and disposes it at the end.
func directInstance(t *testing.T, js map[string]any, sec map[string]string) *Datasource {
	t.Helper()
	h := serve(t, js, sec) // only for its settings
	d, err := NewDatasourceWithOptions(context.Background(), *h.settings, Options{Now: func() time.Time { return testNow }})
	if err != nil || d.settingErr != nil {
		t.Fatal(err, d.settingErr)
	}
	t.Cleanup(d.Dispose)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		ok := 0
		for _, st := range d.store.Statuses() {
			if !st.LastSuccess.IsZero() {
				ok++
			}
		}
		if ok == 2 {
			return d
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("direct instance never refreshed: %+v", d.store.Statuses())
	return nil
}

package traces

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend/log"

	"github.com/livemap/servicemap/internal/testenv/postgres"
	"github.com/livemap/servicemap/pkg/config"
	"github.com/livemap/servicemap/pkg/model"
	"github.com/livemap/servicemap/pkg/source/pgwindow"
	"github.com/livemap/servicemap/pkg/store"
)

// These tests talk to a real PostgreSQL server started for them.

type fixedClock struct{ t time.Time }

func (c *fixedClock) now() time.Time { return c.t }

func newSource(t *testing.T, pg *postgres.Server, db string, jsonData map[string]any, secure map[string]string, clk *fixedClock) (*Source, *store.Store) {
	t.Helper()
	jsonData["host"], jsonData["database"], jsonData["user"] = pg.Addr, db, pg.User
	if _, ok := jsonData["sslMode"]; !ok {
		jsonData["sslMode"] = "disable"
	}
	raw, _ := json.Marshal(jsonData)
	if secure == nil {
		secure = map[string]string{}
	}
	if _, ok := secure["password"]; !ok {
		secure["password"] = pg.Password
	}
	s, err := config.Parse(raw, secure)
	if err != nil {
		t.Fatal(err)
	}
	st := store.New(store.Options{Retention: s.Retention(), Now: clk.now})
	src, err := New(s, st, log.DefaultLogger)
	if err != nil {
		t.Fatal(err)
	}
	src.SetClock(clk.now)
	t.Cleanup(src.Close)
	return src, st
}

func edgeCounts(st *store.Store, from, to time.Time) map[string][2]uint64 {
	edges, _ := st.Snapshot(from, to, model.AllSources)
	out := map[string][2]uint64{}
	for _, e := range edges {
		out[e.Key.ID()] = [2]uint64{e.Stats.Calls, e.Stats.Errors}
	}
	return out
}

func TestCallsShapeIncrementalExactlyOnce(t *testing.T) {
	pg := postgres.Start(t, postgres.Options{})
	db := pg.CreateDatabase(t, "calls_test")
	pg.Exec(t, db, CallsDDL)
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	clk := &fixedClock{now}
	insert := func(at time.Time, parent, child string, ms float64, status string) {
		var p any = parent
		if parent == "" {
			p = nil
		}
		pg.Exec(t, db, `INSERT INTO calls VALUES ($1, $2, $3, $4, $5)`, at, p, child, ms, status)
	}
	// history inside retention, one row beyond it, one row without a callee
	for i := 0; i < 100; i++ {
		status := "OK"
		if i%20 == 0 {
			status = "ERROR"
		}
		insert(now.Add(-time.Duration(i+2)*time.Minute), "frontend", "checkout", float64(10+i), status)
	}
	insert(now.Add(-10*time.Minute), "", "frontend", 5, "OK")
	insert(now.Add(-25*time.Hour), "frontend", "old", 5, "OK")
	insert(now.Add(-5*time.Minute), "frontend", "", 1, "OK") // no callee: skipped and counted
	src, st := newSource(t, pg, db, map[string]any{"tableShape": "calls"}, nil, clk)
	if err := src.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	day := [2]time.Time{now.Add(-24 * time.Hour), now.Add(time.Hour)}
	want := map[string][2]uint64{"frontend->checkout": {100, 5}, "user->frontend": {1, 0}}
	if got := edgeCounts(st, day[0], day[1]); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after backfill %v, want %v", got, want)
	}
	// a row inside the grace period is not read yet; it is counted once later
	insert(now.Add(-30*time.Second), "frontend", "checkout", 12, "ERROR")
	if err := src.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := edgeCounts(st, day[0], day[1])["frontend->checkout"]; got != [2]uint64{100, 5} {
		t.Fatalf("row inside the grace period counted early: %v", got)
	}
	clk.t = now.Add(2 * time.Minute)
	insert(now.Add(90*time.Second), "frontend", "checkout", 12, "OK") // still inside grace
	for i := 0; i < 3; i++ {                                          // refreshing again never counts twice
		if err := src.Refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if got := edgeCounts(st, day[0], day[1])["frontend->checkout"]; got != [2]uint64{101, 6} {
		t.Fatalf("after incremental refreshes %v, want {101 6}", got)
	}
	if !strings.Contains(st.Statuses()[0].Detail, "1 rows without child_service skipped") {
		t.Errorf("skipped row not reported: %q", st.Statuses()[0].Detail)
	}
}

func TestSpansShapeFromPostgres(t *testing.T) {
	pg := postgres.Start(t, postgres.Options{})
	db := pg.CreateDatabase(t, "spans_test")
	pg.Exec(t, db, SpansDDL)
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	ins := func(trace, id, parent, svc, kind string, at time.Time, durMs int, status string, attrs map[string]string) {
		a, _ := json.Marshal(attrs)
		var p any = parent
		if parent == "" {
			p = nil
		}
		pg.Exec(t, db, `INSERT INTO spans VALUES ($1,$2,$3,$4,'op',$5,$6,$7,$8,$9,'{}')`,
			trace, id, p, svc, kind, at, int64(durMs)*1_000_000, status, string(a))
	}
	// 50 traces: user → frontend → checkout (gRPC) → postgres; every 10th checkout call fails
	for i := 0; i < 50; i++ {
		tr := fmt.Sprintf("%032x", i+1)
		at := now.Add(-time.Duration(51-i) * time.Minute) // the newest is older than the grace period
		status := "STATUS_CODE_OK"
		if i%10 == 0 {
			status = "STATUS_CODE_ERROR"
		}
		ins(tr, "0000000000000001", "", "frontend", "SPAN_KIND_SERVER", at, 100, "", map[string]string{"http.request.method": "GET"})
		ins(tr, "0000000000000002", "0000000000000001", "frontend", "SPAN_KIND_CLIENT", at.Add(time.Millisecond), 80, "", map[string]string{"rpc.system": "grpc"})
		ins(tr, "0000000000000003", "0000000000000002", "checkout", "SPAN_KIND_SERVER", at.Add(2*time.Millisecond), 70, status, map[string]string{"rpc.system": "grpc"})
		ins(tr, "0000000000000004", "0000000000000003", "checkout", "SPAN_KIND_CLIENT", at.Add(3*time.Millisecond), 20, "", map[string]string{"db.system": "postgresql", "db.namespace": "orders", "server.address": "pg.shop"})
	}
	clk := &fixedClock{now}
	src, st := newSource(t, pg, db, map[string]any{"tableShape": "spans"}, nil, clk)
	if err := src.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := map[string][2]uint64{"checkout->postgresql:orders@pg.shop": {50, 0}, "frontend->checkout": {50, 5}, "user->frontend": {50, 0}}
	if got := edgeCounts(st, now.Add(-time.Hour), now); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("edges %v, want %v", got, want)
	}
	if err := src.Check(context.Background()); err != nil {
		t.Errorf("schema check on a good table: %v", err)
	}
}

func TestCustomSQLRunsReadOnlyWithMacros(t *testing.T) {
	pg := postgres.Start(t, postgres.Options{})
	db := pg.CreateDatabase(t, "custom_test")
	pg.Exec(t, db, `CREATE TABLE rpc_log (at timestamptz, caller text, callee text, ms int, ok boolean)`)
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	for i := 0; i < 10; i++ {
		pg.Exec(t, db, `INSERT INTO rpc_log VALUES ($1, 'a', 'b', 5, $2)`, now.Add(-time.Duration(i+2)*time.Minute), i != 0)
	}
	custom := `SELECT at AS "timestamp", caller AS parent_service, callee AS child_service, ms AS duration_ms,
  CASE WHEN ok THEN 'OK' ELSE 'ERROR' END AS status FROM rpc_log WHERE $__timeFilter(at)`
	clk := &fixedClock{now}
	src, st := newSource(t, pg, db, map[string]any{"tableShape": "custom", "customSql": custom}, nil, clk)
	if err := src.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := edgeCounts(st, now.Add(-time.Hour), now); got["a->b"] != [2]uint64{10, 1} {
		t.Fatalf("custom edges %v", got)
	}
	// a statement that writes is refused by the read-only transaction
	pg.Exec(t, db, `CREATE SEQUENCE side_effect`)
	evil := `SELECT at AS "timestamp", caller AS parent_service, callee AS child_service, ms AS duration_ms,
  'OK' AS status FROM rpc_log WHERE $__timeFilter(at) AND nextval('side_effect') > 0`
	src2, _ := newSource(t, pg, db, map[string]any{"tableShape": "custom", "customSql": evil}, nil, clk)
	err := src2.Refresh(context.Background())
	if err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Fatalf("data-modifying custom SQL: error %v, want a read-only refusal", err)
	}
	conn := pg.Connect(t, db)
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(context.Background(), `SELECT last_value FROM side_effect WHERE is_called`).Scan(&n); err == nil {
		t.Fatalf("the sequence advanced to %d inside a read-only read", n)
	}
}

func TestSchemaCheckNamesWhatIsMissing(t *testing.T) {
	pg := postgres.Start(t, postgres.Options{})
	db := pg.CreateDatabase(t, "schema_test")
	pg.Exec(t, db, `CREATE TABLE calls ("timestamp" timestamptz, parent_service text, child_service text)`)
	clk := &fixedClock{time.Now()}
	src, _ := newSource(t, pg, db, map[string]any{"tableShape": "calls"}, nil, clk)
	err := src.Check(context.Background())
	if err == nil || !strings.Contains(err.Error(), `lacks column(s) duration_ms, status`) {
		t.Errorf("missing columns: %v", err)
	}
	src2, _ := newSource(t, pg, db, map[string]any{"tableShape": "spans"}, nil, clk)
	if err := src2.Check(context.Background()); err == nil || !strings.Contains(err.Error(), `table "spans" not found`) {
		t.Errorf("missing table: %v", err)
	}
	src3, _ := newSource(t, pg, db, map[string]any{"tableShape": "calls"}, map[string]string{"password": "wrong"}, clk)
	if err := src3.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "cannot connect") {
		t.Errorf("wrong password: %v", err)
	}
}

func TestTLSModes(t *testing.T) {
	pg := postgres.Start(t, postgres.Options{TLS: true})
	db := pg.CreateDatabase(t, "tls_test")
	pg.Exec(t, db, CallsDDL)
	clk := &fixedClock{time.Now()}
	otherCA := postgres.Start(t, postgres.Options{TLS: true}).CACertPEM
	for _, tc := range []struct {
		mode, ca string
		host     string
		ok       bool
	}{
		{"require", "", "", true},
		{"verify-ca", pg.CACertPEM, "", true},
		{"verify-full", pg.CACertPEM, "", true},          // certificate names 127.0.0.1
		{"verify-full", otherCA, "", false},              // wrong CA
		{"verify-ca", otherCA, "", false},                // wrong CA
		{"verify-full", pg.CACertPEM, "localhost", true}, // DNS name in the certificate
	} {
		t.Run(tc.mode+map[bool]string{true: "-ok", false: "-refused"}[tc.ok], func(t *testing.T) {
			js := map[string]any{"tableShape": "calls", "sslMode": tc.mode}
			sec := map[string]string{}
			if tc.ca != "" {
				sec["tlsCACert"] = tc.ca
			}
			src, _ := newSource(t, pg, db, js, sec, clk)
			if tc.host != "" {
				_, port, _ := strings.Cut(pg.Addr, ":")
				src.settings.Host = tc.host + ":" + port
				cfg, _ := pgwindow.PoolConfig(src.settings)
				if cfg.ConnConfig.TLSConfig.ServerName != tc.host {
					t.Fatalf("server name %q", cfg.ConnConfig.TLSConfig.ServerName)
				}
				return
			}
			err := src.Check(context.Background())
			if tc.ok && err != nil {
				t.Fatalf("want success: %v", err)
			}
			if !tc.ok && (err == nil || !strings.Contains(err.Error(), "certificate")) {
				t.Fatalf("want a certificate error, got %v", err)
			}
		})
	}
}

func TestFailingSourceKeepsLastGoodData(t *testing.T) {
	pg := postgres.Start(t, postgres.Options{})
	db := pg.CreateDatabase(t, "fail_test")
	pg.Exec(t, db, CallsDDL)
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	pg.Exec(t, db, `INSERT INTO calls VALUES ($1, 'a', 'b', 3, 'OK')`, now.Add(-5*time.Minute))
	clk := &fixedClock{now}
	src, st := newSource(t, pg, db, map[string]any{"tableShape": "calls"}, nil, clk)
	if err := src.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	pg.Exec(t, db, `ALTER TABLE calls RENAME TO calls_gone`) // a real failure: the table disappears
	clk.t = now.Add(time.Minute)
	if err := src.Refresh(context.Background()); err == nil {
		t.Fatal("refresh against a missing table succeeded")
	}
	if got := edgeCounts(st, now.Add(-time.Hour), now.Add(time.Hour)); got["a->b"] != [2]uint64{1, 0} {
		t.Fatalf("last good data lost: %v", got)
	}
	sts := st.Statuses()
	if len(sts) != 1 || !sts[0].Stale() || !strings.Contains(sts[0].Notice(), "traces source is stale since 2026-11-23T12:01:00Z") {
		t.Fatalf("status %+v", sts)
	}
	pg.Exec(t, db, `ALTER TABLE calls_gone RENAME TO calls`)
	pg.Exec(t, db, `INSERT INTO calls VALUES ($1, 'a', 'b', 3, 'OK')`, now.Add(-30*time.Second))
	clk.t = now.Add(2 * time.Minute)
	if err := src.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := edgeCounts(st, now.Add(-time.Hour), now.Add(time.Hour)); got["a->b"] != [2]uint64{2, 0} {
		t.Fatalf("after recovery %v, want 2 calls", got)
	}
}

func TestDDLMatchesDocs(t *testing.T) {
	doc, err := os.ReadFile("../../../docs/tables.md")
	if err != nil {
		t.Fatal(err)
	}
	for name, ddl := range map[string]string{"calls": CallsDDL, "spans": SpansDDL} {
		if !strings.Contains(string(doc), ddl) {
			t.Errorf("docs/tables.md does not contain the %s DDL exactly as pkg/source/traces/ddl.go has it", name)
		}
	}
}

package plugin

// Benchmarks against a real PostgreSQL holding 10,000,000 `calls` rows
// (1,000 services, 5,000 edges, every edge every minute for 24 h): the
// service map answered by the plugin over the gRPC plugin protocol (the
// package's TestMain server), and the SQL a Grafana user would write with the
// built-in PostgreSQL data source over the same rows. They only run with
// -bench; the data is loaded inside the benchmark, once per benchmark run.

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/jackc/pgx/v5"

	"github.com/livemap/servicemap/internal/testenv"
	"github.com/livemap/servicemap/internal/testenv/postgres"
	"github.com/livemap/servicemap/pkg/source/traces"
)

const (
	benchRows     = 10_000_000
	benchServices = 1000
	benchEdges    = 5000
	benchMinutes  = 24 * 60
)

func benchEdge(i int) (string, string) {
	src, k := i%benchServices, i/benchServices
	return fmt.Sprintf("svc-%03d", src), fmt.Sprintf("svc-%03d", (src+1+k*101)%benchServices)
}

// loadCalls fills a calls table with 10M rows over [testNow-24h, testNow):
// every edge-minute has one call, 2.8M of them a second; lognormal latencies
// (median 20 ms), 1 % errors. Rows arrive in time order, as in production.
func loadCalls(b *testing.B, pg *postgres.Server, db string) {
	pg.Exec(b, db, traces.CallsDDL)
	conn := pg.Connect(b, db)
	defer conn.Close(context.Background())
	names := make([][2]string, benchEdges)
	for i := range names {
		names[i][0], names[i][1] = benchEdge(i)
	}
	extra := benchRows - benchEdges*benchMinutes // edge-minutes with a second call
	r := rand.New(rand.NewPCG(3, 4))
	start := testNow.Add(-24 * time.Hour)
	m, e, second := 0, 0, false
	total := int64(benchEdges * benchMinutes)
	row := make([]any, 5)
	t0 := time.Now()
	copied, err := conn.CopyFrom(context.Background(), pgx.Identifier{"calls"},
		[]string{"timestamp", "parent_service", "child_service", "duration_ms", "status"},
		pgx.CopyFromFunc(func() ([]any, error) {
			if m == benchMinutes {
				return nil, nil
			}
			sec := 1
			if second {
				sec = 31
			}
			row[0] = start.Add(time.Duration(m)*time.Minute + time.Duration(sec)*time.Second + time.Duration(e)*time.Millisecond/10)
			row[1], row[2] = names[e][0], names[e][1]
			row[3] = math.Exp(math.Log(20) + 0.6*r.NormFloat64())
			if r.IntN(100) == 0 {
				row[4] = "ERROR"
			} else {
				row[4] = "OK"
			}
			// `extra` edge-minutes, spread evenly, get a second call
			if idx := int64(m*benchEdges + e); !second && (idx*int64(extra))/total != ((idx+1)*int64(extra))/total {
				second = true
				return row, nil
			}
			second = false
			e++
			if e == benchEdges {
				e, m = 0, m+1
			}
			return row, nil
		}))
	if err != nil {
		b.Fatal(err)
	}
	pg.Exec(b, db, `VACUUM ANALYZE calls`)
	b.Logf("copied %d calls rows in %v (incl. the timestamp index), VACUUM ANALYZE done at %v", copied, time.Since(t0), time.Since(t0))
}

// BenchmarkSQLAlternative runs, on the same 10M rows, both
//
//   - sql: the aggregate a Grafana user would write with the built-in
//     PostgreSQL data source ($__timeFilter expands to the fixed 24 h range),
//     all 5,000 result rows read;
//   - plugin-protocol: a serviceMap query over 24 h through the gRPC plugin
//     protocol, answered by an instance whose trace source backfilled the
//     same table (backfill time is logged).
func BenchmarkSQLAlternative(b *testing.B) {
	pg := postgres.Start(b, postgres.Options{})
	db := pg.CreateDatabase(b, "bench")
	loadCalls(b, pg, db)

	b.Run("sql", func(b *testing.B) {
		conn := pg.Connect(b, db)
		defer conn.Close(context.Background())
		sql := `SELECT parent_service, child_service, count(*), avg(duration_ms), avg((status = 'ERROR')::int)
FROM calls WHERE "timestamp" > $1 GROUP BY 1, 2`
		ds := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			t0 := time.Now()
			rows, err := conn.Query(context.Background(), sql, testNow.Add(-24*time.Hour))
			if err != nil {
				b.Fatal(err)
			}
			n := 0
			var total int64
			for rows.Next() {
				var p, c string
				var cnt int64
				var avg, er float64
				if err := rows.Scan(&p, &c, &cnt, &avg, &er); err != nil {
					b.Fatal(err)
				}
				n++
				total += cnt
			}
			if err := rows.Err(); err != nil {
				b.Fatal(err)
			}
			ds = append(ds, time.Since(t0))
			if n != benchEdges || total != benchRows {
				b.Fatalf("%d groups, %d calls", n, total)
			}
		}
		b.StopTimer()
		testenv.ReportLatencies(b, ds)
	})

	b.Run("plugin-protocol", func(b *testing.B) {
		benchServiceMapProtocol(b, pg, db)
	})
}

// BenchmarkServiceMapPluginProtocol is the plugin half alone (it loads its
// own 10M rows).
func BenchmarkServiceMapPluginProtocol(b *testing.B) {
	pg := postgres.Start(b, postgres.Options{})
	db := pg.CreateDatabase(b, "bench")
	loadCalls(b, pg, db)
	b.Run("24h", func(b *testing.B) { benchServiceMapProtocol(b, pg, db) })
}

func benchServiceMapProtocol(b *testing.B, pg *postgres.Server, db string) {
	raw, _ := json.Marshal(map[string]any{"host": pg.Addr, "database": db, "user": pg.User, "sslMode": "disable",
		"tableShape": "calls", "slo": map[string]any{"errorRate": 0.01, "p99LatencyMs": 500}})
	settings := &backend.DataSourceInstanceSettings{ID: nextID.Add(1), UID: "bench-uid", Name: "bench",
		JSONData: raw, DecryptedSecureJSONData: map[string]string{"password": pg.Password}, Updated: testNow}
	pctx := backend.PluginContext{PluginID: PluginID, DataSourceInstanceSettings: settings}
	ctx := context.Background()
	t0 := time.Now()
	for {
		r, err := pluginClient.CheckHealth(ctx, &backend.CheckHealthRequest{PluginContext: pctx})
		if err != nil {
			b.Fatal(err)
		}
		if r.Status == backend.HealthStatusOk && strings.Contains(r.Message, "last refresh") {
			b.Logf("backfill of the calls table by the trace source: %v (%s)", time.Since(t0), r.Message)
			break
		}
		if time.Since(t0) > 10*time.Minute {
			b.Fatalf("no refresh after 10 min: %+v", r)
		}
		time.Sleep(200 * time.Millisecond)
	}
	req := &backend.QueryDataRequest{PluginContext: pctx, Queries: []backend.DataQuery{{
		RefID: "A", QueryType: "serviceMap", TimeRange: backend.TimeRange{From: testNow.Add(-24 * time.Hour), To: testNow},
		Interval: time.Minute, MaxDataPoints: 1000, JSON: json.RawMessage(`{}`)}}}
	ds := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t1 := time.Now()
		resp, err := pluginClient.QueryData(ctx, req)
		if err != nil {
			b.Fatal(err)
		}
		ds = append(ds, time.Since(t1))
		dr := resp.Responses["A"]
		if dr.Error != nil || len(dr.Frames) != 2 || dr.Frames[0].Rows() != benchServices || dr.Frames[1].Rows() != benchEdges {
			b.Fatalf("response: %v, %d frames", dr.Error, len(dr.Frames))
		}
	}
	b.StopTimer()
	testenv.ReportLatencies(b, ds)
}

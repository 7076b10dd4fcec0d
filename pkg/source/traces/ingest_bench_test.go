package traces

// BenchmarkIngestSpans: what backfilling a spans table costs compared with
// PostgreSQL merely scanning the same rows. Runs only with -bench; the rows
// are loaded into a throwaway PostgreSQL inside the benchmark.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend/log"
	"github.com/jackc/pgx/v5"

	"github.com/livemap/servicemap/internal/testenv/postgres"
	"github.com/livemap/servicemap/pkg/config"
	"github.com/livemap/servicemap/pkg/store"
)

// benchSpanRows is the scale: BENCH_SPAN_ROWS overrides the default 2,000,000
// (3 spans per trace: root SERVER, CLIENT, remote SERVER).
func benchSpanRows() int {
	if v, err := strconv.Atoi(os.Getenv("BENCH_SPAN_ROWS")); err == nil && v > 0 {
		return v
	}
	return 2_000_000
}

func BenchmarkIngestSpans(b *testing.B) {
	const services, edges = 1000, 5000
	traces := benchSpanRows() / 3
	rowsTotal := traces * 3
	end := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	start := end.Add(-24 * time.Hour)

	pg := postgres.Start(b, postgres.Options{})
	db := pg.CreateDatabase(b, "spans_bench")
	pg.Exec(b, db, SpansDDL)
	conn := pg.Connect(b, db)
	defer conn.Close(context.Background())

	r := rand.New(rand.NewPCG(5, 6))
	svc := func(i int) string { return fmt.Sprintf("svc-%03d", i) }
	tr, part := 0, 0
	row := make([]any, 11)
	t0 := time.Now()
	n, err := conn.CopyFrom(context.Background(), pgx.Identifier{"spans"},
		[]string{"trace_id", "span_id", "parent_span_id", "service_name", "span_name", "span_kind", "start_time",
			"duration_ns", "status_code", "attributes", "resource_attributes"},
		pgx.CopyFromFunc(func() ([]any, error) {
			if tr == traces {
				return nil, nil
			}
			e := tr % edges
			src, dst := e%services, (e%services+1+(e/services)*101)%services
			at := start.Add(time.Duration(float64(tr) / float64(traces) * float64(24*time.Hour)))
			dur := time.Duration(math.Exp(math.Log(20)+0.6*r.NormFloat64()) * float64(time.Millisecond))
			tid := fmt.Sprintf("%032x", tr+1)
			status := "STATUS_CODE_UNSET"
			switch part {
			case 0: // root server span of the caller
				row[0], row[1], row[2], row[3], row[5] = tid, "0000000000000001", nil, svc(src), "SPAN_KIND_SERVER"
				row[6], row[7], row[9] = at, int64(2*dur), `{"http.request.method":"GET"}`
			case 1: // client span
				row[0], row[1], row[2], row[3], row[5] = tid, "0000000000000002", "0000000000000001", svc(src), "SPAN_KIND_CLIENT"
				row[6], row[7], row[9] = at.Add(time.Millisecond), int64(dur), `{"rpc.system":"grpc","server.address":"`+svc(dst)+`","server.port":"8080"}`
			case 2: // server span of the callee
				row[0], row[1], row[2], row[3], row[5] = tid, "0000000000000003", "0000000000000002", svc(dst), "SPAN_KIND_SERVER"
				row[6], row[7], row[9] = at.Add(2*time.Millisecond), int64(dur*9/10), `{"rpc.system":"grpc"}`
				if r.IntN(100) == 0 {
					status = "STATUS_CODE_ERROR"
				}
			}
			row[4], row[8], row[10] = "op", status, `{"service.namespace":"shop"}`
			part++
			if part == 3 {
				part, tr = 0, tr+1
			}
			return row, nil
		}))
	if err != nil {
		b.Fatal(err)
	}
	pg.Exec(b, db, `VACUUM ANALYZE spans`)
	b.Logf("loaded %d spans rows (%d traces over 24 h, %d edges) in %v", n, traces, edges, time.Since(t0))

	// (a) PostgreSQL scanning the rows once, with the reader's columns.
	b.Run("scan", func(b *testing.B) {
		sql := fmt.Sprintf(`COPY (SELECT %s FROM spans) TO STDOUT`, spanColumns)
		for i := 0; i < b.N; i++ {
			tag, err := conn.PgConn().CopyTo(context.Background(), io.Discard, sql)
			if err != nil {
				b.Fatal(err)
			}
			if tag.RowsAffected() != int64(rowsTotal) {
				b.Fatalf("copied %d rows", tag.RowsAffected())
			}
		}
		b.ReportMetric(float64(rowsTotal)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	})

	// (b) Source.Refresh backfilling them into a fresh store each iteration.
	b.Run("refresh", func(b *testing.B) {
		raw, _ := json.Marshal(map[string]any{"host": pg.Addr, "database": db, "user": pg.User, "sslMode": "disable",
			"tableShape": "spans", "retentionHours": 25, "statementTimeoutSeconds": 600})
		s, err := config.Parse(raw, map[string]string{"password": pg.Password})
		if err != nil {
			b.Fatal(err)
		}
		now := end.Add(5 * time.Minute) // everything is past the grace period and the pairing wait
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			st := store.New(store.Options{Retention: s.Retention(), Now: func() time.Time { return now }})
			src, err := New(s, st, log.DefaultLogger)
			if err != nil {
				b.Fatal(err)
			}
			src.SetClock(func() time.Time { return now })
			b.StartTimer()
			if err := src.Refresh(context.Background()); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			p := src.reader.(*spansReader).pairer
			if p.Spans != uint64(rowsTotal) || p.Calls != uint64(2*traces) {
				b.Fatalf("pairer: %d spans, %d calls (want %d, %d); %s", p.Spans, p.Calls, rowsTotal, 2*traces, src.reader.Progress())
			}
			src.Close()
			b.StartTimer()
		}
		b.ReportMetric(float64(rowsTotal)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	})
}

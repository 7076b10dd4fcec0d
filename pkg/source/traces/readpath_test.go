package traces

// The spans reader decodes raw row bytes and fetches one window ahead. This
// test holds it to the straightforward reading it replaced: rows.Scan of the
// same SQL into Span values fed to Pairer.Add, window by window without
// prefetch, on a randomized span set in a real PostgreSQL (odd spellings,
// non-hex ids, orphans, duplicates, children before parents, NULLs, and a
// table whose columns are uuid, char, varchar and timestamp without zone).

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/livemap/servicemap/internal/testenv/postgres"
	"github.com/livemap/servicemap/pkg/config"
	"github.com/livemap/servicemap/pkg/model"
	"github.com/livemap/servicemap/pkg/source/pgwindow"
	"github.com/livemap/servicemap/pkg/store"
)

// scanReader is the reading before raw decoding and prefetch, kept as the
// reference: every column scanned into a string, then Pairer.Add.
type scanReader struct {
	table  string
	pairer *Pairer
}

func (r *scanReader) RequiredColumns() (string, []string) { return r.table, nil }
func (r *scanReader) Progress() string                    { return "" }

func (r *scanReader) Read(ctx context.Context, pool *pgxpool.Pool, from, to time.Time) (*store.Batch, error) {
	rows, err := pool.Query(ctx, fmt.Sprintf(`SELECT %s FROM %s WHERE start_time >= $1 AND start_time < $2`, spanColumns, pgwindow.QuoteTable(r.table)), from, to)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var spans []Span
	for rows.Next() {
		var s Span
		var kind, status string
		a := &s.Attrs
		if err := rows.Scan(&s.TraceID, &s.SpanID, &s.ParentSpanID, &s.Service, &kind, &s.Start, &s.DurationMs, &status,
			&a.PeerService, &a.DBSystem, &a.DBNamespace, &a.ServerAddress, &a.ServerPort, &a.RPCSystem, &a.HTTPMethod,
			&a.MessagingSystem, &a.MessagingDest, &a.ServiceNamespace, &s.KubeNamespace); err != nil {
			return nil, err
		}
		s.Kind, s.Failed = ParseKind(kind), ParseFailed(status)
		spans = append(spans, s)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	b := store.NewBatch(model.SourceTraces)
	for i := range spans {
		r.pairer.Add(&spans[i], b)
	}
	r.pairer.Expire(to, b)
	return b, nil
}

// randomSpans fills table with traces of random shape; odd is the table with
// uuid trace ids, char(16) span ids and a timestamp without time zone.
func randomSpans(t *testing.T, conn *pgx.Conn, table string, odd bool, now time.Time, seed uint64) int {
	r := rand.New(rand.NewPCG(seed, 7))
	pick := func(xs ...any) any { return xs[r.IntN(len(xs))] }
	services := []string{"frontend", "checkout", "pay", "δ-svc", "inventory", "Frontend"}
	kinds := []any{"SPAN_KIND_SERVER", "SPAN_KIND_CLIENT", "SPAN_KIND_INTERNAL", "SPAN_KIND_PRODUCER", "SPAN_KIND_CONSUMER",
		"server", "Client", "3", "2", " SPAN_KIND_CLIENT ", "", nil, "bogus", "SPAN_KIND_CLIENT", "SPAN_KIND_SERVER"}
	statuses := []any{"STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR", "Error", "2", " error", nil, "", "STATUS_CODE_UNSET"}
	traceID := func(i int) string {
		if odd {
			b := make([]byte, 16)
			for j := range b {
				b[j] = byte(r.UintN(256))
			}
			return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
		}
		switch r.IntN(10) {
		case 0:
			return fmt.Sprintf("%032X", i*7919+1)
		case 1:
			return fmt.Sprintf("trace-%d", i)
		case 2:
			return fmt.Sprintf("%031xg", i) // right length, not hex
		}
		return fmt.Sprintf("%032x", uint64(i)*0x9e3779b97f4a7c15)
	}
	spanID := func(n int) string {
		switch r.IntN(8) {
		case 0:
			return fmt.Sprintf("s%d", n)
		case 1:
			return fmt.Sprintf("%015xz", n)
		case 2:
			return fmt.Sprintf("%016X", n*31+5)
		}
		return fmt.Sprintf("%016x", n*31+5)
	}
	attrs := func() any {
		if r.IntN(10) == 0 {
			return nil
		}
		a := map[string]any{}
		for _, kv := range [][2]any{
			{"peer.service", pick("billing", "mail", "")}, {"db.system", pick("postgresql", "redis")},
			{"db.system.name", "mysql"}, {"db.namespace", pick("orders", "users")}, {"db.name", "legacy"},
			{"server.address", pick("pg.shop", "10.0.0.7", "")}, {"net.peer.name", "old.host"},
			{"server.port", pick("5432", 6379.0)}, {"net.peer.port", "1"}, {"rpc.system", pick("grpc", "GRPC", "thrift")},
			{"http.request.method", "GET"}, {"http.method", "POST"}, {"messaging.system", pick("kafka", "rabbitmq")},
			{"messaging.destination.name", pick("orders", "")},
		} {
			if r.IntN(6) == 0 {
				a[kv[0].(string)] = kv[1]
			}
		}
		j, _ := json.Marshal(a)
		return string(j)
	}
	var rows [][]any
	for i := 0; i < 600; i++ {
		tid := traceID(i)
		at := now.Add(-time.Duration(r.IntN(100*60_000)) * time.Millisecond)
		type node struct {
			id string
			at time.Time
		}
		var made []node
		for j, n := 0, 1+r.IntN(7); j < n; j++ {
			id, start := spanID(i*10+j), at
			var parent any
			switch {
			case j > 0 && r.IntN(12) == 0:
				parent = spanID(1_000_000 + i) // never arrives
			case j > 0:
				p := made[r.IntN(len(made))]
				parent, start = p.id, p.at.Add(time.Duration(r.IntN(60_000)-5_000)*time.Microsecond)
				if r.IntN(15) == 0 { // beyond the wait
					start = start.Add(time.Duration(20+r.IntN(40)) * time.Second)
				}
			default:
				parent = pick(nil, "", nil)
			}
			if r.IntN(40) == 0 && len(made) > 0 { // a duplicate span id
				id = made[0].id
			}
			var startV any = start
			if odd {
				startV = start.UTC()
			}
			var res any = pick(`{"service.namespace":"shop"}`, `{"service.namespace":"ops"}`, `{}`, nil,
				`{"k8s.namespace.name":"prod","service.namespace":"shop"}`, `{"k8s.namespace.name":"","service.namespace":"ops"}`, `{"k8s.namespace.name":"staging"}`)
			row := []any{tid, id, parent, services[r.IntN(len(services))], "op", pick(kinds...), startV,
				int64(r.ExpFloat64() * 30e6), pick(statuses...), attrs(), res}
			rows = append(rows, row)
			made = append(made, node{id, start})
		}
	}
	r.Shuffle(len(rows), func(i, j int) { rows[i], rows[j] = rows[j], rows[i] })
	n, err := conn.CopyFrom(context.Background(), pgx.Identifier{table}, []string{"trace_id", "span_id", "parent_span_id",
		"service_name", "span_name", "span_kind", "start_time", "duration_ns", "status_code", "attributes", "resource_attributes"},
		pgx.CopyFromRows(rows))
	if err != nil {
		t.Fatal(err)
	}
	return int(n)
}

// snapshotText prints every edge (calls, errors, latency sum rounded,
// protocol, first and last seen) and every node, sorted.
func snapshotText(st *store.Store, from, to time.Time) string {
	edges, nodes := st.Snapshot(from, to, model.AllSources)
	var lines []string
	for _, e := range edges {
		protocol := e.Info.Protocol
		if _, virtual := nodes[e.Key.Target]; virtual && protocol != "" {
			// Calls to virtual nodes are settled in Expire's map order and the
			// first protocol in a batch wins (EdgeInfo.Merge), in either reading.
			protocol = "(some)"
		}
		lines = append(lines, fmt.Sprintf("%s calls=%d errors=%d sum=%.6g p50=%.6g protocol=%q first=%d last=%d",
			e.Key.ID(), e.Stats.Calls, e.Stats.Errors, math.Round(e.Stats.LatencySumMs*1e3)/1e3,
			e.Stats.Latency.Quantile(0.5), protocol, e.FirstSeen.Unix(), e.LastSeen.Unix()))
	}
	for id, n := range nodes {
		if id == "billing" || id == "mail" {
			// A peer.service node's kind comes from the client span's db or
			// messaging system; several clients settled in one Expire merge
			// in map order, in either reading.
			n.Kind = "(some)"
		}
		lines = append(lines, fmt.Sprintf("node %s %+v", id, n))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func TestSpansReaderMatchesScanReference(t *testing.T) {
	pg := postgres.Start(t, postgres.Options{})
	db := pg.CreateDatabase(t, "spans_readpath")
	pg.Exec(t, db, SpansDDL)
	pg.Exec(t, db, `CREATE TABLE odd_spans (trace_id uuid NOT NULL, span_id char(16) NOT NULL, parent_span_id varchar(40),
 service_name varchar(64) NOT NULL, span_name text NOT NULL, span_kind text, start_time timestamp NOT NULL,
 duration_ns bigint NOT NULL, status_code text, attributes jsonb, resource_attributes jsonb)`)
	conn := pg.Connect(t, db)
	defer conn.Close(context.Background())
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

	for _, tc := range []struct {
		table string
		odd   bool
	}{{"spans", false}, {"odd_spans", true}} {
		t.Run(tc.table, func(t *testing.T) {
			total := randomSpans(t, conn, tc.table, tc.odd, now, 11)
			clk := &fixedClock{now.Add(-70 * time.Minute)}
			src, st := newSource(t, pg, db, map[string]any{"tableShape": "spans", "table": tc.table, "retentionHours": 3}, nil, clk)

			raw, _ := json.Marshal(map[string]any{"host": pg.Addr, "database": db, "user": pg.User, "sslMode": "disable",
				"tableShape": "spans", "table": tc.table, "retentionHours": 3})
			settings, err := config.Parse(raw, map[string]string{"password": pg.Password})
			if err != nil {
				t.Fatal(err)
			}
			refStore := store.New(store.Options{Retention: settings.Retention(), Now: clk.now})
			ref := &scanReader{table: tc.table, pairer: NewPairer(pairWait)}
			w, err := pgwindow.New("reference", settings, refStore, ref)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			w.SetClock(clk.now)

			pairer := src.reader.(*spansReader).pairer
			for _, step := range []time.Duration{-70 * time.Minute, -31 * time.Minute, -30 * time.Minute, 0, 10 * time.Minute} {
				clk.t = now.Add(step)
				if err := src.Refresh(context.Background()); err != nil {
					t.Fatal(err)
				}
				if _, err := w.Refresh(context.Background()); err != nil {
					t.Fatal(err)
				}
				want := ref.pairer
				if pairer.Spans != want.Spans || pairer.Calls != want.Calls || pairer.Unpaired != want.Unpaired ||
					pairer.ClientsWithoutPeer != want.ClientsWithoutPeer || pairer.Pending() != want.Pending() {
					t.Fatalf("at %v: counters %d/%d/%d/%d/%d, reference %d/%d/%d/%d/%d", step,
						pairer.Spans, pairer.Calls, pairer.Unpaired, pairer.ClientsWithoutPeer, pairer.Pending(),
						want.Spans, want.Calls, want.Unpaired, want.ClientsWithoutPeer, want.Pending())
				}
				g, r := snapshotText(st, now.Add(-3*time.Hour), now.Add(time.Hour)), snapshotText(refStore, now.Add(-3*time.Hour), now.Add(time.Hour))
				if g != r {
					t.Fatalf("at %v: store differs from the reference\n%s", step, lineDiff(g, r))
				}
			}
			// Row by row, the decoded rows are what the reference makes of its
			// scanned spans (the store above only sees seconds and minutes).
			from, to := now.Add(-3*time.Hour), now.Add(time.Hour)
			var want []row
			refRows, err := w.Pool().Query(context.Background(), fmt.Sprintf(`SELECT %s FROM %s WHERE start_time >= $1 AND start_time < $2`,
				spanColumns, pgwindow.QuoteTable(tc.table)), from, to)
			if err != nil {
				t.Fatal(err)
			}
			for refRows.Next() {
				var s Span
				var kind, status string
				a := &s.Attrs
				if err := refRows.Scan(&s.TraceID, &s.SpanID, &s.ParentSpanID, &s.Service, &kind, &s.Start, &s.DurationMs, &status,
					&a.PeerService, &a.DBSystem, &a.DBNamespace, &a.ServerAddress, &a.ServerPort, &a.RPCSystem, &a.HTTPMethod,
					&a.MessagingSystem, &a.MessagingDest, &a.ServiceNamespace, &s.KubeNamespace); err != nil {
					t.Fatal(err)
				}
				s.Kind, s.Failed = ParseKind(kind), ParseFailed(status)
				want = append(want, rowOf(&s, interner{}))
			}
			if refRows.Err() != nil {
				t.Fatal(refRows.Err())
			}
			sr := &spansReader{table: tc.table, pairer: NewPairer(pairWait)}
			got, err := sr.fetch(context.Background(), w.Pool(), from, to, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) || len(got) != total {
				t.Fatalf("%d rows decoded, %d scanned, %d inserted", len(got), len(want), total)
			}
			for i := range got {
				g, r := got[i], want[i]
				if !g.start.Equal(r.start) {
					t.Fatalf("row %d: start %v, reference %v", i, g.start, r.start)
				}
				g.start, r.start = time.Time{}, time.Time{}
				if !reflect.DeepEqual(g, r) {
					t.Fatalf("row %d:\n got %+v %+v\nwant %+v %+v", i, g, g.attrs, r, r.attrs)
				}
			}
			// Every row was read, and the data exercised what it is meant to.
			if pairer.Spans != uint64(total) || pairer.Unpaired == 0 || pairer.ClientsWithoutPeer == 0 || pairer.Calls < uint64(total)/4 {
				t.Errorf("%d rows: %d spans, %d calls, %d unpaired, %d clients without peer", total, pairer.Spans, pairer.Calls, pairer.Unpaired, pairer.ClientsWithoutPeer)
			}
			t.Logf("%d rows: %d calls, %d unpaired, %d clients without peer, %d pending", total, pairer.Calls, pairer.Unpaired, pairer.ClientsWithoutPeer, pairer.Pending())
		})
	}
}

// lineDiff lists the lines only one side has.
func lineDiff(got, want string) string {
	in := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(s, "\n") {
			m[l] = true
		}
		return m
	}
	g, w := in(got), in(want)
	var out []string
	for l := range g {
		if !w[l] {
			out = append(out, "got  "+l)
		}
	}
	for l := range w {
		if !g[l] {
			out = append(out, "want "+l)
		}
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

// A row that cannot be read in a later window stops the prefetching refresh
// there: the windows before it are applied once, nothing after it is, and
// the next refresh resumes from the failed window, again exactly once.
func TestPrefetchFailureMidBackfillIsExactlyOnce(t *testing.T) {
	pg := postgres.Start(t, postgres.Options{})
	db := pg.CreateDatabase(t, "spans_prefetch_fail")
	pg.Exec(t, db, SpansDDL)
	pg.Exec(t, db, `ALTER TABLE spans ALTER COLUMN duration_ns DROP NOT NULL`)
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	// one root span every minute for the last 60 minutes: user → frontend
	for i := 1; i <= 60; i++ {
		pg.Exec(t, db, `INSERT INTO spans VALUES ($1, '0000000000000001', NULL, 'frontend', 'op', 'SPAN_KIND_SERVER', $2, 5000000, '', '{}', '{}')`,
			fmt.Sprintf("%032x", i), now.Add(-time.Duration(i)*time.Minute+time.Second))
	}
	// the span of minute -22 has no duration: its window (-25..-20 min) fails
	pg.Exec(t, db, `UPDATE spans SET duration_ns = NULL WHERE trace_id = $1`, fmt.Sprintf("%032x", 22))
	clk := &fixedClock{now}
	src, st := newSource(t, pg, db, map[string]any{"tableShape": "spans", "retentionHours": 1}, nil, clk)
	err := src.Refresh(context.Background())
	if err == nil || !strings.Contains(err.Error(), "reading spans shape from 2026-11-23T11:35:00Z to 2026-11-23T11:40:00Z") ||
		!strings.Contains(err.Error(), "column duration_ns") {
		t.Fatalf("refresh error %v", err)
	}
	pairer := src.reader.(*spansReader).pairer
	if got := edgeCounts(st, now.Add(-2*time.Hour), now); got["user->frontend"] != [2]uint64{35, 0} || pairer.Spans != 35 {
		t.Fatalf("after the failure: %v, %d spans paired; want the 35 spans before the bad window", got, pairer.Spans)
	}
	pg.Exec(t, db, `UPDATE spans SET duration_ns = 5000000 WHERE trace_id = $1`, fmt.Sprintf("%032x", 22))
	clk.t = now.Add(2 * time.Minute) // past the grace period for the newest span
	if err := src.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := edgeCounts(st, now.Add(-2*time.Hour), now); got["user->frontend"] != [2]uint64{60, 0} || pairer.Spans != 60 {
		t.Fatalf("after recovery: %v, %d spans paired; want 60", got, pairer.Spans)
	}
}

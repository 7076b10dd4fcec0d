package traces

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/livemap/servicemap/pkg/model"
	"github.com/livemap/servicemap/pkg/source/pgwindow"
	"github.com/livemap/servicemap/pkg/store"
)

// spansReader reads the OpenTelemetry-shaped `spans` table and pairs spans.
// Each window is one range scan on start_time with no join and no ORDER BY,
// so it runs unchanged on Citus with spans distributed by trace_id.
type spansReader struct {
	table  string
	pairer *Pairer
}

func (r *spansReader) RequiredColumns() (string, []string) {
	return r.table, []string{"trace_id", "span_id", "parent_span_id", "service_name", "span_name", "span_kind",
		"start_time", "duration_ns", "status_code", "attributes", "resource_attributes"}
}

func (r *spansReader) Progress() string {
	p := r.pairer
	return fmt.Sprintf("%d spans, %d calls, %d spans waiting to pair, %d server spans whose parent never arrived, %d client spans with no peer attributes",
		p.Spans, p.Calls, p.Pending(), p.Unpaired, p.ClientsWithoutPeer)
}

const spanColumns = `trace_id, span_id, COALESCE(parent_span_id, ''), service_name, COALESCE(span_kind, ''),
 start_time, duration_ns::float8 / 1e6, COALESCE(status_code, ''),
 COALESCE(attributes->>'peer.service', ''),
 COALESCE(attributes->>'db.system', attributes->>'db.system.name', ''),
 COALESCE(attributes->>'db.namespace', attributes->>'db.name', ''),
 COALESCE(attributes->>'server.address', attributes->>'net.peer.name', ''),
 COALESCE(attributes->>'server.port', attributes->>'net.peer.port', ''),
 COALESCE(attributes->>'rpc.system', ''),
 COALESCE(attributes->>'http.request.method', attributes->>'http.method', ''),
 COALESCE(attributes->>'messaging.system', ''),
 COALESCE(attributes->>'messaging.destination.name', ''),
 COALESCE(resource_attributes->>'service.namespace', '')`

// read buffers the window's spans; pairing happens in pair, after the whole
// window arrived, so a failed read leaves the pairing state untouched.
func (r *spansReader) Read(ctx context.Context, pool *pgxpool.Pool, from, to time.Time) (*store.Batch, error) {
	sql := fmt.Sprintf(`SELECT %s FROM %s WHERE start_time >= $1 AND start_time < $2`, spanColumns, pgwindow.QuoteTable(r.table))
	rows, err := pool.Query(ctx, sql, from, to)
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
			&a.MessagingSystem, &a.MessagingDest, &a.ServiceNamespace); err != nil {
			return nil, fmt.Errorf("reading %s row: %w", r.table, err)
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

package traces

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/livemap/servicemap/pkg/model"
	"github.com/livemap/servicemap/pkg/source/pgwindow"
	"github.com/livemap/servicemap/pkg/store"
)

var _ pgwindow.Prefetcher = (*spansReader)(nil)

// spansReader reads the OpenTelemetry-shaped `spans` table and pairs spans.
// Each window is one range scan on start_time with no join and no ORDER BY,
// so it runs unchanged on Citus with spans distributed by trace_id.
type spansReader struct {
	table  string
	pairer *Pairer
	names  interner  // used by Fetch only
	bufs   sync.Pool // *[]row: a window's rows, reused once paired
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
 COALESCE(resource_attributes->>'service.namespace', ''),
 COALESCE(NULLIF(resource_attributes->>'k8s.namespace.name', ''), resource_attributes->>'service.namespace', '')`

// Read reads and pairs one window (pgwindow.Window calls Fetch and the
// returned step itself, so that it can fetch the next window meanwhile).
func (r *spansReader) Read(ctx context.Context, pool *pgxpool.Pool, from, to time.Time) (*store.Batch, error) {
	pair, err := r.Fetch(ctx, pool, from, to)
	if err != nil {
		return nil, err
	}
	return pair()
}

// Fetch buffers the window's spans, decoded straight from the rows' bytes;
// pairing happens in the returned step, after the whole window arrived, so a
// failed read leaves the pairing state untouched. Fetch touches only the
// reader's interned strings, never the pairing state, so it may run one window
// ahead of the pairing on another goroutine (never two Fetches at once).
func (r *spansReader) Fetch(ctx context.Context, pool *pgxpool.Pool, from, to time.Time) (func() (*store.Batch, error), error) {
	buf, _ := r.bufs.Get().(*[]row)
	if buf == nil {
		buf = new([]row)
	}
	spans, err := r.fetch(ctx, pool, from, to, (*buf)[:0])
	if err != nil {
		return nil, err
	}
	return func() (*store.Batch, error) {
		b := store.NewBatch(model.SourceTraces)
		for i := range spans {
			r.pairer.add(&spans[i], b)
		}
		r.pairer.Expire(to, b)
		clear(spans) // drop the strings and attributes before pooling
		*buf = spans
		r.bufs.Put(buf)
		return b, nil
	}, nil
}

// fetch appends the rows of [from, to) to spans.
func (r *spansReader) fetch(ctx context.Context, pool *pgxpool.Pool, from, to time.Time, spans []row) ([]row, error) {
	sql := fmt.Sprintf(`SELECT %s FROM %s WHERE start_time >= $1 AND start_time < $2`, spanColumns, pgwindow.QuoteTable(r.table))
	rows, err := pool.Query(ctx, sql, from, to)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	if r.names == nil {
		r.names = interner{}
	}
	d := spanDecoder{names: r.names, typeMap: rows.Conn().TypeMap(), fields: rows.FieldDescriptions()}
	for rows.Next() {
		spans = append(spans, row{})
		if err := d.decode(rows.RawValues(), &spans[len(spans)-1]); err != nil {
			return nil, fmt.Errorf("reading %s row: %w", r.table, err)
		}
	}
	return spans, rows.Err()
}

package gateway

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/livemap/servicemap/pkg/model"
	"github.com/livemap/servicemap/pkg/source/pgwindow"
	"github.com/livemap/servicemap/pkg/store"
)

// TableDDL is the access-log table exactly as docs/tables.md documents it
// (a test keeps the two the same): one row per request.
const TableDDL = `CREATE TABLE gateway_logs (
    "time"      timestamptz      NOT NULL,
    client      text             NOT NULL,
    client_key  text,
    caller      text,
    service     text             NOT NULL,
    status      integer          NOT NULL,
    duration_ms double precision,
    protocol    text,
    grpc_status integer
);
CREATE INDEX gateway_logs_time_idx ON gateway_logs ("time");`

// tableReader reads the access-log table window by window (the windowing,
// watermark and exactly-once application are pgwindow's). It is a
// pgwindow.Reader.
type tableReader struct {
	table   string
	callers *Callers
	names   Names // set by the source before each refresh

	// counted over every applied window, for CheckHealth
	rows, skipped, noClient uint64
}

func (r *tableReader) RequiredColumns() (string, []string) {
	return r.table, []string{"time", "client", "client_key", "caller", "service", "status", "duration_ms", "protocol", "grpc_status"}
}

func (r *tableReader) Progress() string {
	return fmt.Sprintf("%d requests, %d rows without service or status skipped, %d without a client key", r.rows, r.skipped, r.noClient)
}

func (r *tableReader) Read(ctx context.Context, pool *pgxpool.Pool, from, to time.Time) (*store.Batch, error) {
	sql := fmt.Sprintf(`SELECT "time", client, client_key, caller, service, status::int8, duration_ms::float8, protocol, grpc_status::int8
FROM %s WHERE "time" >= $1 AND "time" < $2`, pgwindow.QuoteTable(r.table))
	rows, err := pool.Query(ctx, sql, from, to)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	b := store.NewBatch(model.SourceGateway)
	var n, skipped, noClient uint64
	described := map[model.EdgeKey]bool{} // protocol and caller kind once per edge and window
	for rows.Next() {
		var (
			ts                                 time.Time
			client, clientKey, caller, service *string
			status, grpcStatus                 *int64
			duration                           *float64
			protocol                           *string
		)
		if err := rows.Scan(&ts, &client, &clientKey, &caller, &service, &status, &duration, &protocol, &grpcStatus); err != nil {
			return nil, fmt.Errorf("reading %s row: %w", r.table, err)
		}
		svc := r.names.Node(str(service))
		if svc == "" || status == nil {
			skipped++ // cannot be drawn or judged: counted, never silently dropped
			continue
		}
		n++
		from, kind := r.callers.Caller(str(caller), str(client))
		edge := model.EdgeKey{Source: from, Target: svc}
		lat := -1.0
		if duration != nil {
			lat = *duration
		}
		var grpc *int
		if grpcStatus != nil {
			g := int(*grpcStatus)
			grpc = &g
		}
		key := str(clientKey)
		if key == "" {
			key = str(client)
		}
		if key == "" {
			noClient++
		}
		b.AddClientCall(edge, ts, lat, IsError(int(*status), grpc), key)
		if described[edge] {
			continue
		}
		described[edge] = true
		p := protocolName(str(protocol))
		switch {
		case p == "" && grpc != nil:
			p = "gRPC"
		case p == "":
			p = "HTTP"
		}
		b.AddEdgeInfo(edge, model.EdgeInfo{Protocol: p})
		b.AddNode(model.NodeInfo{ID: from, Kind: kind})
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	r.rows += n
	r.skipped += skipped
	r.noClient += noClient
	return b, nil
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

package traces

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/livemap/servicemap/pkg/config"
	"github.com/livemap/servicemap/pkg/model"
	"github.com/livemap/servicemap/pkg/source/pgwindow"
	"github.com/livemap/servicemap/pkg/store"
)

// callsReader reads the `calls` shape: one row per call.
type callsReader struct {
	table   string
	Skipped uint64 // rows without a callee
}

func (r *callsReader) RequiredColumns() (string, []string) {
	return r.table, []string{"timestamp", "parent_service", "child_service", "duration_ms", "status"}
}

func (r *callsReader) Progress() string {
	return fmt.Sprintf("%d rows without child_service skipped", r.Skipped)
}

func (r *callsReader) Read(ctx context.Context, pool *pgxpool.Pool, from, to time.Time) (*store.Batch, error) {
	sql := fmt.Sprintf(`SELECT "timestamp", parent_service, child_service, duration_ms::float8, status::text
FROM %s WHERE "timestamp" >= $1 AND "timestamp" < $2`, pgwindow.QuoteTable(r.table))
	rows, err := pool.Query(ctx, sql, from, to)
	if err != nil {
		return nil, err
	}
	return r.collect(rows)
}

// collect turns call rows into a batch. A row with no callee cannot be drawn:
// it is counted in Skipped, never silently dropped.
func (r *callsReader) collect(rows pgx.Rows) (*store.Batch, error) {
	defer rows.Close()
	b := store.NewBatch(model.SourceTraces)
	var skipped uint64
	for rows.Next() {
		var (
			ts            time.Time
			parent, child *string
			duration      *float64
			status        *string
		)
		if err := rows.Scan(&ts, &parent, &child, &duration, &status); err != nil {
			return nil, fmt.Errorf("reading %s row: %w", r.table, err)
		}
		if child == nil || *child == "" {
			skipped++
			continue
		}
		caller := model.UserNodeID
		if parent != nil && *parent != "" {
			caller = *parent
		}
		lat := -1.0
		if duration != nil {
			lat = *duration
		}
		b.AddCall(model.EdgeKey{Source: caller, Target: *child}, ts, lat, status != nil && strings.EqualFold(strings.TrimSpace(*status), "ERROR"))
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	r.Skipped += skipped
	return b, nil
}

// customReader runs the user's SQL (same columns as calls) inside a
// read-only transaction, with the window as $1 and $2.
type customReader struct {
	callsReader
	sql string
}

func (r *customReader) RequiredColumns() (string, []string) { return "", nil }

func (r *customReader) Read(ctx context.Context, pool *pgxpool.Pool, from, to time.Time) (*store.Batch, error) {
	tx, err := pool.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	sql := fmt.Sprintf(`SELECT "timestamp", parent_service, child_service, duration_ms::float8, status::text FROM (%s) AS custom`,
		config.ExpandMacros(r.sql))
	rows, err := tx.Query(ctx, sql, from, to)
	if err != nil {
		return nil, fmt.Errorf("custom SQL: %w", err)
	}
	return r.collect(rows)
}

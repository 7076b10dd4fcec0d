// Package traces is the application-level evidence: calls between services
// read incrementally from PostgreSQL, in one of three table shapes (calls,
// spans, custom SQL; see docs/tables.md).
package traces

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend/log"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/livemap/servicemap/pkg/config"
	"github.com/livemap/servicemap/pkg/model"
	"github.com/livemap/servicemap/pkg/store"
)

// chunk bounds one read: the backfill of 24 h is 288 range scans, each small
// enough to buffer.
const chunk = 5 * time.Minute

// pairWait is how long after a span ends its children may still arrive.
const pairWait = 30 * time.Second

// Source reads the trace table into the store.
type Source struct {
	settings *config.Settings
	store    *store.Store
	logger   log.Logger
	pool     *pgxpool.Pool
	reader   reader
	now      func() time.Time

	mu        sync.Mutex // one refresh at a time
	watermark time.Time  // everything before it has been read
}

// New prepares the source; it connects lazily.
func New(s *config.Settings, st *store.Store, logger log.Logger) (*Source, error) {
	cfg, err := poolConfig(s)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("connection pool: %w", err)
	}
	src := &Source{settings: s, store: st, logger: logger, pool: pool, now: time.Now}
	switch s.TableShape {
	case config.ShapeCalls:
		src.reader = &callsReader{table: s.Table}
	case config.ShapeSpans:
		src.reader = &spansReader{table: s.Table, pairer: NewPairer(pairWait)}
	default:
		src.reader = &customReader{sql: s.CustomSQL, callsReader: callsReader{table: "custom SQL"}}
	}
	return src, nil
}

// Kind of evidence.
func (s *Source) Kind() model.Source { return model.SourceTraces }

// SetClock replaces time.Now (tests, the demo).
func (s *Source) SetClock(now func() time.Time) { s.now = now }

// Run backfills the retention window, then refreshes on the interval.
func (s *Source) Run(ctx context.Context) {
	t := time.NewTicker(s.settings.RefreshInterval())
	defer t.Stop()
	for {
		if err := s.Refresh(ctx); err != nil && ctx.Err() == nil {
			s.logger.Warn("Trace refresh failed; serving the last good data", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Refresh reads every whole window between the watermark and now minus the
// grace period. Each window is applied in one batch and only then does the
// watermark move: a failure part-way leaves earlier windows counted and the
// failed one to be read again, so no call is lost or counted twice.
func (s *Source) Refresh(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	upper := now.Add(-s.settings.Grace())
	if s.watermark.IsZero() {
		s.watermark = now.Add(-s.settings.Retention()).Truncate(time.Minute)
	}
	var windows, calls int
	for s.watermark.Before(upper) {
		end := s.watermark.Add(chunk)
		if end.After(upper) {
			end = upper
		}
		b, err := s.reader.read(ctx, s.pool, s.watermark, end)
		if err != nil {
			err = fmt.Errorf("reading %s from %s to %s: %w", s.settings.TableShape, s.watermark.UTC().Format(time.RFC3339), end.UTC().Format(time.RFC3339), err)
			s.store.ReportFailure(model.SourceTraces, s.now(), err)
			return err
		}
		s.store.Apply(b)
		windows++
		calls += b.Len()
		s.watermark = end
	}
	s.store.ReportSuccess(model.SourceTraces, s.now(), s.detail())
	return nil
}

func (s *Source) detail() string {
	return "read up to " + s.watermark.UTC().Format(time.RFC3339) + ", " + s.reader.progress()
}

// Check connects and verifies the table and its columns.
func (s *Source) Check(ctx context.Context) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("cannot connect to PostgreSQL at %s: %w", s.settings.Host, err)
	}
	defer conn.Release()
	table, cols := s.reader.requiredColumns()
	if table == "" { // custom SQL: prove it runs, on an empty window
		_, err := s.reader.read(ctx, s.pool, time.Unix(0, 0), time.Unix(0, 0))
		return err
	}
	schema, name := "", table
	if i := strings.IndexByte(table, '.'); i >= 0 {
		schema, name = table[:i], table[i+1:]
	}
	rows, err := conn.Query(ctx, `SELECT column_name FROM information_schema.columns
WHERE table_name = $1 AND ($2 = '' OR table_schema = $2) AND ($2 <> '' OR table_schema = ANY (current_schemas(false)))`, name, schema)
	if err != nil {
		return fmt.Errorf("reading the schema: %w", err)
	}
	have := map[string]bool{}
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			rows.Close()
			return err
		}
		have[c] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	if len(have) == 0 {
		return fmt.Errorf("table %q not found (or not readable by user %q)", table, s.settings.User)
	}
	var missing []string
	for _, c := range cols {
		if !have[c] {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("table %q lacks column(s) %s needed by the %s shape", table, strings.Join(missing, ", "), s.settings.TableShape)
	}
	return nil
}

// Close releases the pool.
func (s *Source) Close() { s.pool.Close() }

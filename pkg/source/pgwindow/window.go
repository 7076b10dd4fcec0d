// Package pgwindow is the incremental PostgreSQL reading shared by the
// sources that read a table of timestamped rows (traces, gateway logs): the
// connection pool, the read window that moves from a watermark to now minus
// the grace period in fixed chunks, the backfill of the retention, and the
// schema check. What a row means is the Reader's business.
package pgwindow

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/livemap/servicemap/pkg/config"
	"github.com/livemap/servicemap/pkg/store"
)

// Chunk bounds one read: the backfill of 24 h is 288 range scans, each small
// enough to buffer.
const Chunk = 5 * time.Minute

// Reader reads the rows of one window [from, to) into a batch. It must not
// touch any state kept between windows until the whole window has been read,
// so a failed read can simply be retried.
type Reader interface {
	Read(ctx context.Context, pool *pgxpool.Pool, from, to time.Time) (*store.Batch, error)
	// RequiredColumns names the table and columns Check verifies; an empty
	// table means "run Read on an empty window instead" (custom SQL).
	RequiredColumns() (table string, columns []string)
	// Progress says what was read so far, for CheckHealth.
	Progress() string
}

// Prefetcher is a Reader whose Read splits in two: Fetch reads a window
// without touching any state kept between windows, and the step it returns
// does the rest. Window fetches the next window on another goroutine while
// the current one is finished and applied; Fetches never overlap each other,
// and the steps run in window order on the Refresh goroutine.
type Prefetcher interface {
	Reader
	Fetch(ctx context.Context, pool *pgxpool.Pool, from, to time.Time) (finish func() (*store.Batch, error), err error)
}

// Window reads a table incrementally into the store. Every whole window
// between the watermark and now minus the grace period is read and applied
// in one batch, and only then does the watermark move: a failure part-way
// leaves earlier windows counted and the failed one to be read again, so no
// row is lost or counted twice.
type Window struct {
	What     string // names the table in errors, e.g. "calls" or "gateway table gateway_logs"
	settings *config.Settings
	store    *store.Store
	pool     *pgxpool.Pool
	reader   Reader
	now      func() time.Time

	mu        sync.Mutex // one refresh at a time
	watermark time.Time  // everything before it has been read
}

// New prepares a window over the settings' PostgreSQL; it connects lazily.
func New(what string, s *config.Settings, st *store.Store, r Reader) (*Window, error) {
	cfg, err := PoolConfig(s)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("connection pool: %w", err)
	}
	return &Window{What: what, settings: s, store: st, pool: pool, reader: r, now: time.Now}, nil
}

// SetClock replaces time.Now (tests, the demo).
func (w *Window) SetClock(now func() time.Time) { w.now = now }

// Pool is the connection pool (tests).
func (w *Window) Pool() *pgxpool.Pool { return w.pool }

// Refresh reads every whole window up to now minus the grace period. It
// returns how far it read and the reader's progress, for the status detail.
func (w *Window) Refresh(ctx context.Context) (detail string, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.now()
	upper := now.Add(-w.settings.Grace())
	if w.watermark.IsZero() {
		w.watermark = now.Add(-w.settings.Retention()).Truncate(time.Minute)
	}
	if p, ok := w.reader.(Prefetcher); ok {
		err := w.prefetching(ctx, p, upper)
		return w.detail(), err
	}
	for w.watermark.Before(upper) {
		end := w.next(upper)
		b, err := w.reader.Read(ctx, w.pool, w.watermark, end)
		if err != nil {
			return w.detail(), w.readError(end, err)
		}
		w.store.Apply(b)
		w.watermark = end
	}
	return w.detail(), nil
}

// next is the end of the window that starts at the watermark.
func (w *Window) next(upper time.Time) time.Time {
	if end := w.watermark.Add(Chunk); end.Before(upper) {
		return end
	}
	return upper
}

func (w *Window) readError(end time.Time, err error) error {
	return fmt.Errorf("reading %s from %s to %s: %w", w.What, w.watermark.UTC().Format(time.RFC3339), end.UTC().Format(time.RFC3339), err)
}

// prefetching is Refresh's loop with the next window's rows read while the
// current one is finished and applied: on two cores, PostgreSQL and the
// reading overlap with the pairing and the store. The watermark still moves
// one applied window at a time, and the fetcher is stopped and waited for
// before returning, so a failure leaves exactly what the plain loop leaves.
func (w *Window) prefetching(ctx context.Context, p Prefetcher, upper time.Time) error {
	type fetched struct {
		end    time.Time
		finish func() (*store.Batch, error)
		err    error
	}
	ctx, cancel := context.WithCancel(ctx)
	ch := make(chan fetched, 1) // one window waiting while the next is read
	done := make(chan struct{})
	defer func() { cancel(); <-done }()
	go func(from time.Time) {
		defer close(done)
		for from.Before(upper) {
			end := from.Add(Chunk)
			if !end.Before(upper) {
				end = upper
			}
			finish, err := p.Fetch(ctx, w.pool, from, end)
			select {
			case ch <- fetched{end, finish, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
			from = end
		}
	}(w.watermark)
	for w.watermark.Before(upper) {
		var f fetched
		select {
		case f = <-ch:
		case <-ctx.Done():
			return w.readError(w.next(upper), ctx.Err())
		}
		if f.err != nil {
			return w.readError(f.end, f.err)
		}
		b, err := f.finish()
		if err != nil {
			return w.readError(f.end, err)
		}
		w.store.Apply(b)
		w.watermark = f.end
	}
	return nil
}

func (w *Window) detail() string {
	return "read up to " + w.watermark.UTC().Format(time.RFC3339) + ", " + w.reader.Progress()
}

// Check connects and verifies the table and its columns.
func (w *Window) Check(ctx context.Context) error {
	conn, err := w.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("cannot connect to PostgreSQL at %s: %w", w.settings.Host, err)
	}
	defer conn.Release()
	table, cols := w.reader.RequiredColumns()
	if table == "" { // custom SQL: prove it runs, on an empty window
		_, err := w.reader.Read(ctx, w.pool, time.Unix(0, 0), time.Unix(0, 0))
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
		return fmt.Errorf("table %q not found (or not readable by user %q)", table, w.settings.User)
	}
	var missing []string
	for _, c := range cols {
		if !have[c] {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("table %q lacks column(s) %s needed by the %s", table, strings.Join(missing, ", "), w.What)
	}
	return nil
}

// Close releases the pool.
func (w *Window) Close() { w.pool.Close() }

// QuoteTable quotes an optionally schema-qualified table name.
func QuoteTable(name string) string {
	return pgx.Identifier(strings.Split(name, ".")).Sanitize()
}

// Package traces is the application-level evidence: calls between services
// read incrementally from PostgreSQL, in one of three table shapes (calls,
// spans, custom SQL; see docs/tables.md). The windowing (watermark, grace,
// backfill, exactly-once application) is pkg/source/pgwindow's.
package traces

import (
	"context"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend/log"

	"github.com/livemap/servicemap/pkg/config"
	"github.com/livemap/servicemap/pkg/model"
	"github.com/livemap/servicemap/pkg/source"
	"github.com/livemap/servicemap/pkg/source/pgwindow"
	"github.com/livemap/servicemap/pkg/store"
)

// pairWait is how long after a span ends its children may still arrive.
const pairWait = 30 * time.Second

// Source reads the trace table into the store.
type Source struct {
	settings *config.Settings
	store    *store.Store
	logger   log.Logger
	reader   pgwindow.Reader
	window   *pgwindow.Window
	now      func() time.Time
	namer    func(context.Context) Namer
}

// Options are the source's optional parts.
type Options struct {
	// Namer, called once per refresh of a spans table, names span services
	// the way the network evidence names them (the Kubernetes source). Nil,
	// or a nil answer: nodes are named by service.name alone.
	Namer func(context.Context) Namer
}

// New prepares the source; it connects lazily.
func New(s *config.Settings, st *store.Store, logger log.Logger, opts ...Options) (*Source, error) {
	src := &Source{settings: s, store: st, logger: logger, now: time.Now}
	for _, o := range opts {
		if o.Namer != nil {
			src.namer = o.Namer
		}
	}
	switch s.TableShape {
	case config.ShapeCalls:
		src.reader = &callsReader{table: s.Table}
	case config.ShapeSpans:
		src.reader = &spansReader{table: s.Table, pairer: NewPairer(pairWait)}
	default:
		src.reader = &customReader{sql: s.CustomSQL, callsReader: callsReader{table: "custom SQL"}}
	}
	w, err := pgwindow.New(s.TableShape+" shape", s, st, src.reader)
	if err != nil {
		return nil, err
	}
	src.window = w
	return src, nil
}

// Kind of evidence.
func (s *Source) Kind() model.Source { return model.SourceTraces }

// SetClock replaces time.Now (tests, the demo).
func (s *Source) SetClock(now func() time.Time) {
	s.now = now
	s.window.SetClock(now)
}

// Run backfills the retention window, then refreshes on the interval.
func (s *Source) Run(ctx context.Context) {
	source.Every(ctx, s.settings.RefreshInterval(), s.Refresh, s.logger, "Trace refresh failed; serving the last good data")
}

// Refresh reads every whole window between the watermark and now minus the
// grace period (see pgwindow.Window.Refresh) and reports the outcome.
func (s *Source) Refresh(ctx context.Context) error {
	if sr, ok := s.reader.(*spansReader); ok && s.namer != nil {
		// Before the windows are read: the pairing runs on this goroutine.
		sr.pairer.SetNamer(s.namer(ctx))
	}
	detail, err := s.window.Refresh(ctx)
	if err != nil {
		s.store.ReportFailure(model.SourceTraces, s.now(), err)
		return err
	}
	s.store.ReportSuccess(model.SourceTraces, s.now(), detail)
	return nil
}

// Check connects and verifies the table and its columns.
func (s *Source) Check(ctx context.Context) error { return s.window.Check(ctx) }

// Close releases the pool.
func (s *Source) Close() { s.window.Close() }

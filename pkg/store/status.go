package store

import (
	"fmt"
	"slices"
	"time"

	"github.com/livemap/servicemap/pkg/model"
)

// SourceStatus is how a source's refreshes are going.
type SourceStatus struct {
	Source      model.Source
	LastSuccess time.Time // end of the last refresh that worked
	LastError   string    // empty while healthy
	FailingFrom time.Time // first failure since the last success
	Detail      string    // e.g. "read up to 12:00:00, 1.2M spans"
}

// Stale reports whether the source's last refresh failed.
func (st SourceStatus) Stale() bool { return st.LastError != "" }

// Notice is the sentence a frame carries while the source is stale.
func (st SourceStatus) Notice() string {
	since := "it never succeeded"
	if !st.LastSuccess.IsZero() {
		since = "data is from before " + st.LastSuccess.UTC().Format(time.RFC3339)
	}
	return fmt.Sprintf("%s source is stale since %s (%s): %s", st.Source, st.FailingFrom.UTC().Format(time.RFC3339), since, st.LastError)
}

// ReportSuccess records a good refresh.
func (s *Store) ReportSuccess(src model.Source, at time.Time, detail string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status(src)
	st.LastSuccess, st.LastError, st.FailingFrom, st.Detail = at, "", time.Time{}, detail
}

// ReportFailure records a failed refresh; the data already in the store stays.
func (s *Store) ReportFailure(src model.Source, at time.Time, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status(src)
	if st.LastError == "" {
		st.FailingFrom = at
	}
	st.LastError = err.Error()
}

func (s *Store) status(src model.Source) *SourceStatus {
	st := s.statuses[src]
	if st == nil {
		st = &SourceStatus{Source: src}
		s.statuses[src] = st
	}
	return st
}

// Statuses lists the sources that reported, in source order.
func (s *Store) Statuses() []SourceStatus {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]SourceStatus, 0, len(s.statuses))
	for _, st := range s.statuses {
		out = append(out, *st)
	}
	slices.SortFunc(out, func(a, b SourceStatus) int { return int(a.Source) - int(b.Source) })
	return out
}

package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend/log"

	"github.com/livemap/servicemap/pkg/config"
	"github.com/livemap/servicemap/pkg/model"
	"github.com/livemap/servicemap/pkg/source"
	"github.com/livemap/servicemap/pkg/source/pgwindow"
	"github.com/livemap/servicemap/pkg/store"
)

// Options wire the source to the rest of the plugin.
type Options struct {
	// Agents lists the agents' base URLs when gateway.agents is empty (the
	// Kubernetes source's discovered agents); nil: none.
	Agents func() []string
	// HTTP replaces the agents' HTTP client (tests).
	HTTP *http.Client
	// Resolver, called once per refresh, maps upstreams to the cluster's
	// nodes (the Kubernetes source's index); nil: names only.
	Resolver func() Resolver
}

// Source reads gateway evidence from the table, the agents or both, and
// reports one status for both (model.SourceGateway).
type Source struct {
	settings *config.Settings
	store    *store.Store
	logger   log.Logger
	now      func() time.Time
	agents   func() []string
	static   bool // agents from gateway.agents: each must serve /v1/gateway
	client   *AgentClient
	table    *pgwindow.Window // nil when the table is not read
	reader   *tableReader
	resolver func() Resolver
	names    Names // this refresh's naming

	mu    sync.Mutex // one refresh at a time
	state map[string]*agentState
}

// New prepares the source; it connects lazily.
func New(s *config.Settings, st *store.Store, logger log.Logger, opts Options) (*Source, error) {
	src := &Source{settings: s, store: st, logger: logger, now: time.Now, state: map[string]*agentState{}, resolver: opts.Resolver}
	switch {
	case len(s.Gateway.Agents) > 0:
		src.agents = func() []string { return s.Gateway.Agents }
		src.static = true
	case opts.Agents != nil:
		src.agents = opts.Agents
	}
	hc := opts.HTTP
	if hc == nil {
		var err error
		if hc, err = s.AgentHTTPClient(); err != nil {
			return nil, err
		}
	}
	src.client = &AgentClient{HTTP: hc, Token: s.Secrets.AgentToken, MaxBytes: 64 << 20}
	if s.GatewayReadsTable() {
		src.reader = &tableReader{table: s.Gateway.Table, callers: NewCallers(s.GatewayCallerCIDRs())}
		w, err := pgwindow.New("gateway table", s, st, src.reader)
		if err != nil {
			return nil, err
		}
		src.table = w
	}
	return src, nil
}

// Kind of evidence.
func (s *Source) Kind() model.Source { return model.SourceGateway }

// SetClock replaces time.Now (tests, the demo).
func (s *Source) SetClock(now func() time.Time) {
	s.now = now
	if s.table != nil {
		s.table.SetClock(now)
	}
}

// Run refreshes on the interval until ctx ends.
func (s *Source) Run(ctx context.Context) {
	source.Every(ctx, s.settings.RefreshInterval(), s.Refresh, s.logger, "Gateway refresh failed; serving the last good data")
}

// Refresh reads the table up to now minus the grace period and polls every
// agent. A failing part (the table, one agent) makes the source stale with
// an error naming it; what the other parts read is applied all the same.
func (s *Source) Refresh(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs, details []string
	s.names = Names{}
	if s.resolver != nil {
		s.names.Resolver = s.resolver()
	}
	if s.table != nil {
		s.reader.names = s.names
		d, err := s.table.Refresh(ctx)
		details = append(details, "table "+s.settings.Gateway.Table+": "+d)
		if err != nil {
			errs = append(errs, err.Error())
		}
	}
	if s.agents != nil {
		agents := s.agents()
		var wg sync.WaitGroup
		states := make([]*agentState, len(agents))
		for i, base := range agents {
			st := s.state[base]
			if st == nil {
				st = &agentState{}
				s.state[base] = st
			}
			states[i] = st
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := s.poll(ctx, base, st)
				var none *noGatewayError
				st.noGateway = errors.As(err, &none) && !s.static
				st.reached, st.lastErr = err == nil, ""
				if err != nil {
					st.lastErr = err.Error()
				}
			}()
		}
		wg.Wait()
		reached, without := 0, 0
		for i, base := range agents {
			switch {
			case states[i].reached:
				reached++
			case states[i].noGateway:
				without++
			default:
				errs = append(errs, fmt.Sprintf("agent %s: %s", base, states[i].lastErr))
			}
			details = append(details, states[i].summary(base))
		}
		details = append(details, fmt.Sprintf("%d of %d agents reached, %d without a gateway log", reached, len(agents), without))
	}
	detail := strings.Join(details, "; ")
	if len(errs) > 0 {
		err := errors.New(strings.Join(errs, "; "))
		s.store.ReportFailure(model.SourceGateway, s.now(), err)
		return err
	}
	s.store.ReportSuccess(model.SourceGateway, s.now(), detail)
	return nil
}

// Check verifies the table's columns and that every agent answers.
func (s *Source) Check(ctx context.Context) error {
	if s.table != nil {
		if err := s.table.Check(ctx); err != nil {
			return err
		}
	}
	if s.agents == nil {
		return nil
	}
	agents := s.agents()
	var errs []string
	for _, base := range agents {
		_, err := s.client.Fetch(ctx, base, "", ^uint64(0)) // after=max: an empty answer
		var none *noGatewayError
		if err != nil && !(errors.As(err, &none) && !s.static) {
			errs = append(errs, fmt.Sprintf("agent %s: %v", base, err))
		}
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	if s.table == nil && len(agents) == 0 {
		return errors.New("no gateway agent found (gateway.agents is empty and the Kubernetes source discovered none)")
	}
	return nil
}

// AgentStatus is one agent's progress, for tests and CheckHealth.
type AgentStatus struct {
	Base, Epoch                 string
	LastSeq, Buckets, Gaps, Bad uint64
	LastBad                     string
	Reached                     bool
}

// AgentStatuses reports every agent polled so far, sorted by base URL.
func (s *Source) AgentStatuses() []AgentStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]AgentStatus, 0, len(s.state))
	for base, st := range s.state {
		out = append(out, AgentStatus{Base: base, Epoch: st.epoch, LastSeq: st.lastSeq, Buckets: st.buckets,
			Gaps: st.gapBuckets, Bad: st.badBuckets, LastBad: st.lastBad, Reached: st.reached})
	}
	slices.SortFunc(out, func(a, b AgentStatus) int { return strings.Compare(a.Base, b.Base) })
	return out
}

// Close releases the table's pool.
func (s *Source) Close() {
	if s.table != nil {
		s.table.Close()
	}
}

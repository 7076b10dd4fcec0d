package kube

import (
	"cmp"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/livemap/servicemap/pkg/agent/api"
	"github.com/livemap/servicemap/pkg/config"
	"github.com/livemap/servicemap/pkg/model"
	"github.com/livemap/servicemap/pkg/store"
)

// Agents lists the agent addresses (host:port): the configured static ones
// and the running pods matching the selector in agentNamespace.
func (s *Source) Agents() []string {
	out := slices.Clone(s.settings.Kube.StaticAgents)
	if s.agents != nil {
		pods, _ := s.agents.Core().V1().Pods().Lister().Pods(s.settings.Kube.AgentNamespace).List(s.selector)
		for _, p := range pods {
			if p.Status.PodIP != "" && p.Status.Phase == corev1.PodRunning {
				out = append(out, net.JoinHostPort(p.Status.PodIP, strconv.Itoa(s.settings.Kube.AgentPort)))
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// agentsChecked bounds how many agents Check fetches from: they share the
// token and TLS settings, so a few show a wrong one.
const agentsChecked = 3

// checkAgents fetches a snapshot (without applying it) from the static
// agents and the running agent pods (listed through the API, as Check may
// run before the informers sync), at most agentsChecked of them, so a
// wrong token, CA or server name shows at "Save & test".
func (s *Source) checkAgents(ctx context.Context) error {
	addrs := slices.Clone(s.settings.Kube.StaticAgents)
	if ns := s.settings.Kube.AgentNamespace; ns != "" {
		pods, err := s.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: s.selector.String()})
		if err != nil {
			return fmt.Errorf("kubernetes: listing agent pods in %q: %w", ns, err)
		}
		for _, p := range pods.Items {
			if p.Status.PodIP != "" && p.Status.Phase == corev1.PodRunning {
				addrs = append(addrs, net.JoinHostPort(p.Status.PodIP, strconv.Itoa(s.settings.Kube.AgentPort)))
			}
		}
	}
	slices.Sort(addrs)
	addrs = slices.Compact(addrs)
	errs := make([]error, min(len(addrs), agentsChecked))
	var wg sync.WaitGroup
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, err := s.get(ctx, addrs[i], nil); err != nil {
				errs[i] = fmt.Errorf("agent %s: %w", addrs[i], err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// agentRun is what the source remembers of one agent between refreshes.
type agentRun struct {
	epoch   string    // the agent process's epoch
	seq     uint64    // the last snapshot whose rows were applied
	through uint64    // births were applied through this poll
	listed  time.Time // last refresh that listed the agent
}

// forgetAgentAfter is how long an agent that is no longer listed (its pod
// not Running for a while) is remembered, so that when it comes back its
// births continue where they stopped instead of starting over.
const forgetAgentAfter = time.Hour

// agentURL is the snapshot URL of an agent address: host:port (https when
// agentCACert is set, else http), or an explicit http:// or https:// URL.
func (s *Source) agentURL(addr string) (string, error) {
	if !strings.Contains(addr, "://") {
		addr = s.settings.AgentScheme() + "://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.Trim(u.Path, "/") != "" {
		return "", fmt.Errorf("want host:port, http://host:port or https://host:port")
	}
	return u.Scheme + "://" + u.Host + "/v1/snapshot", nil
}

// maxBirthPages bounds the answers taken from one agent in one refresh
// while its births say More, and so does the response limit (s.maxBytes)
// on their total size: the rest waits for the next refresh and is
// reported.
const maxBirthPages = 8

// Refresh describes every Service as a node, polls every agent and records
// the connections. A failing agent makes the source stale with a notice
// naming it; the other agents' data is applied all the same. Births the
// agents dropped or lost in a restart before they were fetched are named in
// the source's detail and logged, and so are births left for the next
// refresh or not counted at a first contact.
func (s *Source) Refresh(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	x := s.Index()
	s.lastIdx = x
	b := store.NewBatch(model.SourceNetwork)
	for _, svc := range x.Services() {
		b.AddNode(x.ServiceNode(svc))
	}
	agents := s.Agents()
	now := s.now()
	results := make([]agentFetch, len(agents))
	var wg sync.WaitGroup
	for i, a := range agents {
		run, known := s.agentRuns[a]
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = s.fetchAgent(ctx, a, run, known, now)
		}()
	}
	wg.Wait()
	var snaps []*api.Snapshot
	var errs, lost, notes []string
	for i, f := range results {
		addr := agents[i]
		if run, ok := s.agentRuns[addr]; ok {
			run.listed = now
			s.agentRuns[addr] = run
		}
		if f.fetched {
			s.agentRuns[addr] = f.run
			snaps = append(snaps, f.snaps...)
		}
		lost = append(lost, f.lost...)
		notes = append(notes, f.notes...)
		if f.err != nil {
			errs = append(errs, fmt.Sprintf("agent %s: %v", addr, f.err))
		}
	}
	for addr, run := range s.agentRuns {
		if now.Sub(run.listed) > forgetAgentAfter {
			if run.listed.After(s.forgotBefore) {
				s.forgotBefore = run.listed
			}
			delete(s.agentRuns, addr)
		}
	}
	st := AddSnapshots(b, x, snaps)
	s.store.Apply(b)
	detail := fmt.Sprintf("%d services, %d agents (%d failing), %d new snapshots, %d connections counted, %d duplicates, %d closing ends of closed connections, %d closed births and %d closed connections no fetch had seen from %d agent polls, %d noise rows ignored, %d namespaces not matched to a pod",
		len(x.Services()), len(agents), len(errs), len(snaps), st.Counted, st.Duplicates, st.ClosingSides, st.ClosedBirths, st.ClosedUnsampled, st.BirthPolls, st.Noise, st.UnknownLocal)
	if len(lost) > 0 {
		s.logger.Warn("Closed births lost before they were fetched", "gaps", strings.Join(lost, "; "))
		detail += "; LOST: " + strings.Join(lost, "; ")
	}
	if len(notes) > 0 {
		s.logger.Warn("Closed births not counted in this refresh", "agents", strings.Join(notes, "; "))
		detail += "; NOT COUNTED: " + strings.Join(notes, "; ")
	}
	if len(errs) > 0 {
		err := errors.New(strings.Join(errs, "; "))
		s.store.ReportFailure(model.SourceNetwork, s.now(), err)
		return err
	}
	s.store.ReportSuccess(model.SourceNetwork, s.now(), detail)
	return nil
}

// agentFetch is what one refresh took from one agent: the answers to apply,
// in order (every page of births; rows only from an answer whose births
// reached its snapshot), and what to remember of the agent.
type agentFetch struct {
	snaps   []*api.Snapshot
	run     agentRun
	fetched bool     // run is set: at least one answer arrived
	lost    []string // births lost before any fetch (restart, retention gap)
	notes   []string // births not counted now: left for the next refresh, or skipped at a first contact
	err     error
}

// fetchAgent gets an agent's last snapshot with the births since the poll
// applied last, following More within this refresh (at most maxBirthPages
// answers), so the births of however many polls count now, each once.
//
// On first contact (this source never fetched the agent, or forgot it) it
// asks for every poll the agent holds: this source cannot have counted any
// of them, its store started empty with it. Only when an agent was
// forgotten (not listed for forgetAgentAfter) can the held polls predate a
// fetch of this source; polls taken before the latest such agent was last
// listed are then skipped, and said so.
func (s *Source) fetchAgent(ctx context.Context, addr string, run agentRun, known bool, now time.Time) agentFetch {
	var f agentFetch
	first := !known
	skipped := 0
	pages := cmp.Or(s.birthPages, maxBirthPages)
	var taken int64 // bytes of this refresh's answers
	for page := 1; ; page++ {
		snap, n, err := s.fetch(ctx, addr, run, known)
		taken += n
		if err != nil {
			f.err = err
			break
		}
		births := snap.Births
		if known && run.epoch != snap.Epoch {
			f.lost = append(f.lost, fmt.Sprintf("agent %s restarted (epoch %s, now %s): births after its poll %d were not fetched", addr, run.epoch, snap.Epoch, run.through))
		}
		if births.Gap > 0 {
			f.lost = append(f.lost, fmt.Sprintf("agent %s: births of %d polls (%d..%d) were dropped before this fetch (agent -births-retention)", addr, births.Gap, births.After+1, births.After+births.Gap))
		}
		if first && !s.forgotBefore.IsZero() {
			kept := births.Polls[:0]
			for _, p := range births.Polls {
				if p.TakenAt.After(s.forgotBefore) {
					kept = append(kept, p)
				} else {
					skipped++
				}
			}
			births.Polls = kept
		}
		next := agentRun{epoch: snap.Epoch, seq: snap.Seq, through: births.Through, listed: now}
		sameRun := known && run.epoch == snap.Epoch
		switch {
		case sameRun && run.seq == snap.Seq:
			// No new poll since the last fetch: its rows were counted.
			snap = withoutRows(snap)
		case births.More:
			// The births stop short of the snapshot: its rows wait until they
			// catch up, so that "sampled" (the last rows applied) stays
			// before every poll whose closed connections are still to come.
			snap = withoutRows(snap)
			next.seq = 0
			if sameRun {
				next.seq = run.seq
			}
		}
		f.snaps = append(f.snaps, snap)
		f.run, f.fetched = next, true
		if !births.More {
			break
		}
		if page == pages || taken >= s.maxBytes {
			f.notes = append(f.notes, fmt.Sprintf("agent %s: births fetched through poll %d of %d in %d answers (%d bytes), the rest next refresh", addr, births.Through, snap.Seq, page, taken))
			break
		}
		run, known = next, true
	}
	if skipped > 0 {
		f.notes = append(f.notes, fmt.Sprintf("agent %s (first contact): births of %d held polls taken before %s, when an agent this source forgot was last listed, skipped (they may have been counted then)",
			addr, skipped, s.forgotBefore.UTC().Format(time.RFC3339)))
	}
	return f
}

func withoutRows(snap *api.Snapshot) *api.Snapshot {
	cp := *snap
	cp.Namespaces = nil
	return &cp
}

// fetch gets an agent's last snapshot with the births since the poll
// applied last (run; all held ones if the agent restarted since, or on
// first contact).
func (s *Source) fetch(ctx context.Context, addr string, run agentRun, known bool) (*api.Snapshot, int64, error) {
	q := url.Values{"after": {"0"}} // first contact: every held poll
	if known {
		q = url.Values{"after": {strconv.FormatUint(run.through, 10)}, "epoch": {run.epoch},
			"sampled": {strconv.FormatUint(run.seq, 10)}}
	}
	return s.get(ctx, addr, q)
}

// get asks an agent for its snapshot with the births query q (nil: the last
// poll's births only), with the size of the (decoded) answer.
func (s *Source) get(ctx context.Context, addr string, q url.Values) (*api.Snapshot, int64, error) {
	u, err := s.agentURL(addr)
	if err != nil {
		return nil, 0, err
	}
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+s.settings.Secrets.AgentToken)
	resp, err := s.http.Do(req)
	if err != nil {
		return nil, 0, explainTLS(err, s.settings)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		return nil, 0, fmt.Errorf("GET /v1/snapshot: %s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, s.maxBytes+1))
	if err != nil {
		return nil, 0, err
	}
	if int64(len(body)) > s.maxBytes {
		return nil, 0, fmt.Errorf("snapshot larger than %d bytes", s.maxBytes)
	}
	var snap api.Snapshot
	if err := json.Unmarshal(body, &snap); err != nil {
		return nil, 0, fmt.Errorf("decoding snapshot: %w", err)
	}
	if snap.SchemaVersion != api.SchemaVersion {
		return nil, 0, fmt.Errorf("snapshot schemaVersion %d, want %d (agent and plugin versions differ)", snap.SchemaVersion, api.SchemaVersion)
	}
	if err := checkBirths(&snap); err != nil {
		return nil, 0, err
	}
	return &snap, int64(len(body)), nil
}

// checkBirths rejects a snapshot whose births do not fit its own range, so
// nothing is applied twice on a confused answer.
func checkBirths(snap *api.Snapshot) error {
	b := snap.Births
	switch {
	case snap.Epoch == "":
		return errors.New("snapshot without epoch")
	case b == nil:
		return errors.New("snapshot without births")
	case b.Through > snap.Seq || b.After > b.Through:
		return fmt.Errorf("births cover polls %d..%d, beyond the snapshot's seq %d", b.After+1, b.Through, snap.Seq)
	case b.More && (b.Through == b.After || b.Through == snap.Seq):
		// Asking again from Through would get the same answer, or nothing.
		return fmt.Errorf("births say more but cover polls %d..%d of %d", b.After+1, b.Through, snap.Seq)
	}
	last := b.After
	for _, p := range b.Polls {
		if p.Seq <= last || p.Seq > b.Through {
			return fmt.Errorf("births of poll %d outside %d..%d or out of order", p.Seq, b.After+1, b.Through)
		}
		last = p.Seq
	}
	return nil
}

// explainTLS names the setting to fix when the agent's certificate is refused.
func explainTLS(err error, s *config.Settings) error {
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	serverName := s.Kube.AgentTLSServerName
	switch {
	case errors.As(err, &unknown) && s.Secrets.AgentCACert == "":
		return fmt.Errorf("TLS: the agent's certificate is not signed by a system root CA; put its CA in secureJsonData agentCACert: %w", err)
	case errors.As(err, &unknown):
		return fmt.Errorf("TLS: the agent's certificate is not signed by the CA in secureJsonData agentCACert: %w", err)
	case errors.As(err, &host):
		if serverName == "" {
			return fmt.Errorf("TLS: the agent's certificate does not name the address dialed; set kubernetes.agentTLSServerName to a name in it: %w", err)
		}
		return fmt.Errorf("TLS: the agent's certificate is not valid for kubernetes.agentTLSServerName %q: %w", serverName, err)
	}
	return err
}

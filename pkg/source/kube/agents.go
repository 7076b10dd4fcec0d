package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/livemap/servicemap/pkg/agent/api"
	"github.com/livemap/servicemap/pkg/config"
	"github.com/livemap/servicemap/pkg/model"
	"github.com/livemap/servicemap/pkg/store"
)

func agentTimeout(s *config.Settings) time.Duration {
	d := s.RefreshInterval() * 2 / 3
	if d > 10*time.Second {
		d = 10 * time.Second
	}
	if d < time.Second {
		d = time.Second
	}
	return d
}

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

// Refresh describes every Service as a node, polls every agent and records
// the connections. A failing agent makes the source stale with a notice
// naming it; the other agents' data is applied all the same.
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
	type result struct {
		addr string
		snap *api.Snapshot
		err  error
	}
	results := make([]result, len(agents))
	var wg sync.WaitGroup
	for i, a := range agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			snap, err := s.fetch(ctx, a)
			results[i] = result{a, snap, err}
		}()
	}
	wg.Wait()
	var snaps []*api.Snapshot
	var errs []string
	for _, r := range results {
		if r.err != nil {
			errs = append(errs, fmt.Sprintf("agent %s: %v", r.addr, r.err))
			continue
		}
		// The same snapshot fetched twice (the plugin polls faster than the
		// agent) must not count its closed births twice.
		id := r.addr + "|" + r.snap.Node
		if r.snap.Seq != 0 && s.lastSeq[id] == r.snap.Seq {
			continue
		}
		s.lastSeq[id] = r.snap.Seq
		snaps = append(snaps, r.snap)
	}
	st := AddSnapshots(b, x, snaps)
	s.store.Apply(b)
	detail := fmt.Sprintf("%d services, %d agents (%d failing), %d new snapshots, %d connections counted, %d duplicates, %d closed births, %d noise rows ignored, %d namespaces not matched to a pod",
		len(x.Services()), len(agents), len(errs), len(snaps), st.Counted, st.Duplicates, st.ClosedBirths, st.Noise, st.UnknownLocal)
	if len(errs) > 0 {
		err := errors.New(strings.Join(errs, "; "))
		s.store.ReportFailure(model.SourceNetwork, s.now(), err)
		return err
	}
	s.store.ReportSuccess(model.SourceNetwork, s.now(), detail)
	return nil
}

func (s *Source) fetch(ctx context.Context, addr string) (*api.Snapshot, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v1/snapshot", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+s.settings.Secrets.AgentToken)
	resp, err := s.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		return nil, fmt.Errorf("GET /v1/snapshot: %s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, s.maxBytes+1))
	if err != nil {
		return nil, err
	}
	if int64(len(body)) > s.maxBytes {
		return nil, fmt.Errorf("snapshot larger than %d bytes", s.maxBytes)
	}
	var snap api.Snapshot
	if err := json.Unmarshal(body, &snap); err != nil {
		return nil, fmt.Errorf("decoding snapshot: %w", err)
	}
	if snap.SchemaVersion != 1 {
		return nil, fmt.Errorf("snapshot schemaVersion %d, want 1", snap.SchemaVersion)
	}
	return &snap, nil
}

package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/axiomhq/hyperloglog"

	"github.com/livemap/servicemap/pkg/agent/api"
	"github.com/livemap/servicemap/pkg/model"
	"github.com/livemap/servicemap/pkg/store"
)

// maxRounds bounds how often one refresh follows More from one agent; the
// rest is fetched on the next refresh (the agent keeps it).
const maxRounds = 50

// agentState is what the plugin remembers of one agent between refreshes:
// the epoch and the highest Seq applied (so each bucket is applied exactly
// once), and the counters CheckHealth shows.
type agentState struct {
	epoch   string
	lastSeq uint64
	node    string

	reached    bool   // the last poll got an answer
	noGateway  bool   // the last poll got 404: the agent tails no access log
	lastErr    string // the last poll's error
	buckets    uint64 // buckets applied
	gapBuckets uint64 // buckets the agent dropped before we fetched them
	badBuckets uint64 // buckets skipped as undecodable or inconsistent
	lastBad    string
	lines      api.LineCounts
	restarts   uint64 // epoch changes seen after the first contact
}

// AgentClient fetches gateway reports from one agent's base URL.
type AgentClient struct {
	HTTP     *http.Client
	Token    string
	MaxBytes int64 // limit on one (decoded) answer
}

// Fetch asks base for the buckets after seq in epoch.
func (c *AgentClient) Fetch(ctx context.Context, base, epoch string, after uint64) (*api.GatewayReport, error) {
	u := base + "/v1/gateway?" + url.Values{"after": {strconv.FormatUint(after, 10)}, "epoch": {epoch}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		err := fmt.Errorf("GET /v1/gateway: %s: %s", resp.Status, strings.TrimSpace(string(msg)))
		if resp.StatusCode == http.StatusNotFound {
			return nil, &noGatewayError{err}
		}
		return nil, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.MaxBytes+1))
	if err != nil {
		return nil, err
	}
	if int64(len(body)) > c.MaxBytes {
		return nil, fmt.Errorf("gateway report larger than %d bytes", c.MaxBytes)
	}
	var rep api.GatewayReport
	if err := json.Unmarshal(body, &rep); err != nil {
		return nil, fmt.Errorf("decoding gateway report: %w", err)
	}
	if rep.SchemaVersion != 1 {
		return nil, fmt.Errorf("gateway report schemaVersion %d, want 1", rep.SchemaVersion)
	}
	if rep.Epoch == "" {
		return nil, fmt.Errorf("gateway report without an epoch")
	}
	return &rep, nil
}

// noGatewayError is a 404 for /v1/gateway: an agent that tails no access
// log (or predates the endpoint). For discovered agents — the DaemonSet runs
// on every node, gateways on a few — that is normal, not a failure.
type noGatewayError struct{ error }

func (e *noGatewayError) Unwrap() error { return e.error }

// poll brings one agent up to date: it asks for what came after the last
// applied Seq, applies each answer's good buckets to the store in one batch
// and only then moves the remembered Seq, follows More, and starts again
// from 0 when the agent's epoch changed (it restarted).
func (src *Source) poll(ctx context.Context, base string, st *agentState) error {
	for round := 0; round < maxRounds; round++ {
		rep, err := src.client.Fetch(ctx, base, st.epoch, st.lastSeq)
		if err != nil {
			return err
		}
		if rep.Epoch != st.epoch {
			if st.epoch != "" {
				st.restarts++
			}
			asked := st.lastSeq
			st.epoch, st.lastSeq = rep.Epoch, 0
			if asked != 0 {
				continue // the answer was for the old numbering: ask again from the start
			}
		} else if rep.Gap > 0 {
			st.gapBuckets += rep.Gap
		} else if st.lastSeq > 0 && rep.Oldest > st.lastSeq+1 { // an agent that does not fill Gap
			st.gapBuckets += rep.Oldest - st.lastSeq - 1
		}
		st.node, st.lines = rep.Node, rep.Lines
		b := store.NewBatch(model.SourceGateway)
		last := st.lastSeq
		applied := uint64(0)
		for i := range rep.Buckets {
			gb := &rep.Buckets[i]
			if gb.Seq <= last {
				continue // already applied (an agent repeating itself)
			}
			last = gb.Seq
			if err := addBucket(b, gb, src.names); err != nil {
				st.badBuckets++
				st.lastBad = fmt.Sprintf("seq %d (%s → %s, %s): %v", gb.Seq, gb.Caller, gb.Service, gb.Minute.UTC().Format(time.RFC3339), err)
				src.logger.Warn("Skipping a bad gateway bucket", "agent", base, "error", st.lastBad)
				continue
			}
			applied++
		}
		src.store.Apply(b)
		st.lastSeq, st.buckets = last, st.buckets+applied
		if !rep.More || len(rep.Buckets) == 0 {
			return nil
		}
	}
	return nil
}

// addBucket checks and decodes one agent bucket into the batch; a bucket
// that fails leaves the batch unchanged.
func addBucket(b *store.Batch, gb *api.GatewayBucket, names Names) error {
	svc := names.Node(gb.Service)
	switch {
	case svc == "":
		return fmt.Errorf("no service")
	case gb.Caller == "":
		return fmt.Errorf("no caller")
	case gb.Minute.IsZero():
		return fmt.Errorf("no minute")
	case gb.Errors > gb.Calls:
		return fmt.Errorf("%d errors in %d calls", gb.Errors, gb.Calls)
	}
	var stats model.Stats
	if len(gb.Latency) > 0 {
		if err := stats.Latency.UnmarshalBinary(gb.Latency); err != nil {
			return err
		}
		if stats.Latency.Count() > gb.Calls {
			return fmt.Errorf("latency sketch holds %d requests, bucket says %d calls", stats.Latency.Count(), gb.Calls)
		}
	}
	var clients *hyperloglog.Sketch
	if len(gb.Clients) > 0 {
		clients = hyperloglog.New14()
		if err := clients.UnmarshalBinary(gb.Clients); err != nil {
			return fmt.Errorf("clients sketch: %w", err)
		}
	}
	stats.Calls, stats.Errors, stats.LatencySumMs = gb.Calls, gb.Errors, gb.LatencySumMs
	caller, kind := CallerNode(gb.Caller)
	edge := model.EdgeKey{Source: caller, Target: svc}
	if err := b.AddAggregate(edge, gb.Minute, &stats, clients); err != nil {
		return fmt.Errorf("clients sketch: %w", err)
	}
	p := protocolName(gb.Protocol)
	if p == "" {
		p = "HTTP"
	}
	b.AddEdgeInfo(edge, model.EdgeInfo{Protocol: p})
	b.AddNode(model.NodeInfo{ID: caller, Kind: kind})
	return nil
}

func (st *agentState) summary(base string) string {
	s := fmt.Sprintf("agent %s", base)
	if st.node != "" {
		s += " (" + st.node + ")"
	}
	if st.noGateway {
		return s + ": no gateway log (404)"
	}
	if !st.reached {
		return s + " not reached: " + st.lastErr
	}
	s += fmt.Sprintf(": last seq %d of epoch %s, %d buckets applied, %d lost in gaps, %d bad buckets skipped, %d log lines parsed, %d bad lines",
		st.lastSeq, st.epoch, st.buckets, st.gapBuckets, st.badBuckets, st.lines.Parsed, st.lines.Bad)
	if st.restarts > 0 {
		s += fmt.Sprintf(", %d agent restarts", st.restarts)
	}
	if st.lastBad != "" {
		s += "; last bad bucket " + st.lastBad
	}
	if st.lines.LastBad != "" {
		s += "; last bad line " + st.lines.LastBad
	}
	return s
}

package agent

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/livemap/servicemap/pkg/agent/api"
)

type staticSource struct{ s *api.Snapshot }

func (s staticSource) Last() *api.Snapshot { return s.s }

func (staticSource) Births(after, through, sampled uint64) ([]api.PollBirths, uint64) { return nil, 0 }

// bigSnapshot has two namespaces with n connections each, mixed states.
func bigSnapshot(n int) *api.Snapshot {
	s := &api.Snapshot{SchemaVersion: api.SchemaVersion, Epoch: "e1", Node: "n1", Seq: 7, TakenAt: time.Now().UTC(), PollSeconds: 5, Method: api.MethodNetlink}
	states := []string{"ESTABLISHED", "TIME_WAIT", "SYN_SENT", "CLOSE_WAIT"}
	for k := 0; k < 2; k++ {
		ns := api.Namespace{Inode: uint64(4026530000 + k), PIDs: []int{100 + k}, PIDCount: 1, Method: api.MethodNetlink,
			IPs: []string{fmt.Sprintf("10.244.0.%d", k+2)}, Listeners: []api.Listener{{Endpoint: api.Endpoint{IP: "0.0.0.0", Port: 8080}}}}
		for i := 0; i < n; i++ {
			ns.Connections = append(ns.Connections, api.Conn{
				Local:     api.Endpoint{IP: fmt.Sprintf("10.244.0.%d", k+2), Port: uint16(30000 + i)},
				Remote:    api.Endpoint{IP: "10.244.9.9", Port: 80},
				State:     states[i%len(states)],
				Direction: api.Outbound,
			})
		}
		s.Namespaces = append(s.Namespaces, ns)
	}
	return s
}

// splitBirths splits a /v1/snapshot body into the bounded snapshot JSON (as
// EncodeBounded makes it) and the births appended for the request.
func splitBirths(t *testing.T, body []byte) ([]byte, *api.Births) {
	t.Helper()
	i := bytes.LastIndex(body, []byte(`,"births":`))
	if i < 0 || !bytes.HasSuffix(body, []byte("}\n")) {
		t.Fatalf("no births in the response: %.200s", body)
	}
	var b api.Births
	if err := json.Unmarshal(body[i+len(`,"births":`):len(body)-2], &b); err != nil {
		t.Fatalf("births: %v", err)
	}
	return append(slices.Clip(body[:i]), "}\n"...), &b
}

func get(t *testing.T, url, auth string) (int, []byte, http.Header) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header
}

func TestServerAuth(t *testing.T) {
	if _, err := NewServer(staticSource{}, "", 0); err == nil {
		t.Fatal("empty token accepted")
	}
	srv, err := NewServer(staticSource{bigSnapshot(3)}, "tok-123", 0)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	for _, auth := range []string{"", "Bearer", "Bearer ", "Bearer tok-12", "Bearer tok-1234", "Basic tok-123", "tok-123", "Bearer  tok-123"} {
		code, _, h := get(t, hs.URL+"/v1/snapshot", auth)
		if code != http.StatusUnauthorized || h.Get("WWW-Authenticate") == "" {
			t.Errorf("auth %q: status %d", auth, code)
		}
	}
	code, body, h := get(t, hs.URL+"/v1/snapshot", "Bearer tok-123")
	if code != 200 || h.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d %s", code, body)
	}
	var s api.Snapshot
	if err := json.Unmarshal(body, &s); err != nil || s.Seq != 7 || len(s.Namespaces) != 2 || len(s.Namespaces[0].Connections) != 3 || s.Truncated {
		t.Fatalf("decode: %v %+v", err, s)
	}
	if code, _, _ := get(t, hs.URL+"/healthz", ""); code != 200 {
		t.Errorf("healthz %d", code)
	}
	req, _ := http.NewRequest("POST", hs.URL+"/v1/snapshot", nil)
	req.Header.Set("Authorization", "Bearer tok-123")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %v %v", err, resp)
	}
}

func TestServerNoSnapshotAndStale(t *testing.T) {
	srv, _ := NewServer(staticSource{}, "t", 0)
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	if code, _, _ := get(t, hs.URL+"/v1/snapshot", "Bearer t"); code != http.StatusServiceUnavailable {
		t.Errorf("snapshot before first poll: %d", code)
	}
	if code, _, _ := get(t, hs.URL+"/healthz", ""); code != http.StatusServiceUnavailable {
		t.Errorf("healthz before first poll: %d", code)
	}
	old := bigSnapshot(1)
	old.TakenAt = time.Now().Add(-time.Hour)
	srv2, _ := NewServer(staticSource{old}, "t", 0)
	srv2.StaleAfter = time.Minute
	hs2 := httptest.NewServer(srv2.Handler())
	defer hs2.Close()
	if code, _, _ := get(t, hs2.URL+"/healthz", ""); code != http.StatusServiceUnavailable {
		t.Errorf("stale healthz: %d", code)
	}
}

func TestServerTruncation(t *testing.T) {
	snap := bigSnapshot(200)
	full, err := EncodeBounded(snap, DefaultMaxResponseBytes)
	if err != nil {
		t.Fatal(err)
	}
	const max = 8000
	if len(full) <= max {
		t.Fatalf("test snapshot too small: %d", len(full))
	}
	srv, _ := NewServer(staticSource{snap}, "t", max)
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	code, resp, _ := get(t, hs.URL+"/v1/snapshot", "Bearer t")
	body, births := splitBirths(t, resp)
	if code != 200 || len(body) > max {
		t.Fatalf("status %d, %d bytes", code, len(body))
	}
	if births.After != 6 || births.Through != 7 || len(births.Polls) != 0 {
		t.Errorf("births %+v, want the last poll's (none)", births)
	}
	var s api.Snapshot
	if err := json.Unmarshal(body, &s); err != nil {
		t.Fatal(err)
	}
	kept := len(s.Namespaces[0].Connections) + len(s.Namespaces[1].Connections)
	tr := s.Truncation
	if !s.Truncated || tr == nil || tr.MaxBytes != max || tr.TotalConnections != 400 || tr.KeptConnections != kept ||
		tr.DroppedConnections != 400-kept || kept == 0 || kept >= 400 {
		t.Fatalf("truncation %+v kept %d", tr, kept)
	}
	// Kept rows: ESTABLISHED first (namespace order), TIME_WAIT last.
	for _, ns := range s.Namespaces {
		for _, c := range ns.Connections {
			if c.State == "TIME_WAIT" {
				t.Errorf("TIME_WAIT kept while others were dropped: %+v", c)
			}
		}
	}
	if len(s.Namespaces[0].Connections) < len(s.Namespaces[1].Connections) {
		t.Errorf("order: ns0 %d ns1 %d", len(s.Namespaces[0].Connections), len(s.Namespaces[1].Connections))
	}
	// Maximal: one more connection would not fit; and deterministic.
	again, _ := EncodeBounded(snap, max)
	if string(again) != string(body) {
		t.Error("truncation is not deterministic")
	}
	if len(snap.Namespaces[0].Connections) != 200 || snap.Truncated {
		t.Error("EncodeBounded modified the snapshot")
	}
	if b, _ := EncodeBounded(snap, len(body)+150); len(b) <= len(body) {
		t.Errorf("not maximal: %d bytes with 150 more allowed", len(b))
	}
	// A limit below the skeleton fails loudly rather than exceeding it.
	if _, err := EncodeBounded(snap, 100); err != ErrTooLarge {
		t.Errorf("tiny limit: %v", err)
	}
	srv3, _ := NewServer(staticSource{snap}, "t", 100)
	hs3 := httptest.NewServer(srv3.Handler())
	defer hs3.Close()
	if code, _, _ := get(t, hs3.URL+"/v1/snapshot", "Bearer t"); code != http.StatusInternalServerError {
		t.Errorf("tiny limit status %d", code)
	}
}

func TestServerGzip(t *testing.T) {
	snap := bigSnapshot(500)
	srv, _ := NewServer(staticSource{snap}, "t", 0)
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	plain, _ := EncodeBounded(snap, DefaultMaxResponseBytes)
	// Go's transport asks for gzip and decompresses transparently.
	req, _ := http.NewRequest("GET", hs.URL+"/v1/snapshot", nil)
	req.Header.Set("Authorization", "Bearer t")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	body, _ = splitBirths(t, body)
	if !resp.Uncompressed || string(body) != string(plain) {
		t.Errorf("gzip: uncompressed=%v equal=%v", resp.Uncompressed, string(body) == string(plain))
	}
	// One gzip member (curl and others stop after the first), read raw.
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	zr.Multistream(false)
	first, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("gzip stream: %v", err)
	}
	if snapPart, _ := splitBirths(t, first); string(snapPart) != string(plain) {
		t.Errorf("the first gzip member is not the whole response")
	}
	// Explicitly without gzip.
	req.Header.Set("Accept-Encoding", "identity")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	body, _ = splitBirths(t, body)
	if resp.Header.Get("Content-Encoding") != "" || string(body) != string(plain) {
		t.Errorf("identity: %q", resp.Header.Get("Content-Encoding"))
	}
}

// ringSource serves a snapshot and per-poll births as the Agent holds them:
// one entry per poll, oldest first (polls without births are empty).
type ringSource struct {
	snap  *api.Snapshot
	polls []api.PollBirths
}

func (r ringSource) Last() *api.Snapshot { return r.snap }

func (r ringSource) Births(after, through, sampled uint64) ([]api.PollBirths, uint64) {
	var out []api.PollBirths
	for _, p := range r.polls {
		if p.Seq > after && p.Seq <= through && len(p.Namespaces) > 0 {
			out = append(out, p)
		}
	}
	return out, r.polls[0].Seq
}

func birthPoll(seq uint64, n int) api.PollBirths {
	p := api.PollBirths{Seq: seq}
	if n > 0 {
		p.Namespaces = []api.NamespaceBirths{{Inode: 1, IPs: []string{"10.244.0.2"}, Closed: []api.Flow{{
			Direction: api.Outbound, Local: api.Endpoint{IP: "10.244.0.2"}, Remote: api.Endpoint{IP: "10.244.0.3", Port: 80}, ClosedSinceLastPoll: n}}}}
	}
	return p
}

// TestServerBirthsAfter: the after/epoch query returns exactly the births
// after the client's poll, reports dropped polls and restarts, bounds the
// answer by whole polls and refuses bad input with a reason.
func TestServerBirthsAfter(t *testing.T) {
	snap := bigSnapshot(1)
	snap.Seq, snap.Epoch = 10, "run-2"
	// Polls 5..10 held (1..4 dropped); births in 5, 7, 8 and 10.
	src := ringSource{snap: snap, polls: []api.PollBirths{birthPoll(5, 1), birthPoll(6, 0), birthPoll(7, 2), birthPoll(8, 3), birthPoll(9, 0), birthPoll(10, 4)}}
	srv, _ := NewServer(src, "t", 0)
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	ask := func(query string) (int, *api.Births, string) {
		code, body, _ := get(t, hs.URL+"/v1/snapshot"+query, "Bearer t")
		if code != 200 {
			return code, nil, string(body)
		}
		_, b := splitBirths(t, body)
		return code, b, ""
	}
	seqs := func(b *api.Births) (out []uint64, total int) {
		for _, p := range b.Polls {
			out = append(out, p.Seq)
			total += p.Namespaces[0].Closed[0].ClosedSinceLastPoll
		}
		return out, total
	}
	for _, tc := range []struct {
		query       string
		sampled     uint64
		after, gap  uint64
		polls       []uint64
		total       int
		description string
	}{
		{"", 9, 9, 0, []uint64{10}, 4, "no query: the last poll only"},
		{"?after=7&epoch=run-2", 7, 7, 0, []uint64{8, 10}, 7, "after a poll of this run"},
		{"?after=7&epoch=run-2&sampled=9", 9, 7, 0, []uint64{8, 10}, 7, "rows applied up to a later poll"},
		{"?after=10&epoch=run-2", 10, 10, 0, nil, 0, "nothing new"},
		{"?after=2&epoch=run-2", 2, 2, 2, []uint64{5, 7, 8, 10}, 10, "polls 3 and 4 were dropped: gap 2"},
		{"?after=7&epoch=run-1&sampled=7", 0, 0, 4, []uint64{5, 7, 8, 10}, 10, "another run: from its first poll; 1..4 dropped"},
		{"?after=0", 0, 0, 4, []uint64{5, 7, 8, 10}, 10, "first contact: every held poll; 1..4 dropped"},
	} {
		code, b, msg := ask(tc.query)
		if code != 200 {
			t.Errorf("%s: status %d %s", tc.description, code, msg)
			continue
		}
		got, total := seqs(b)
		if b.After != tc.after || b.Sampled != tc.sampled || b.Through != 10 || b.Oldest != 5 || b.Gap != tc.gap || b.More || !slices.Equal(got, tc.polls) || total != tc.total {
			t.Errorf("%s: births after=%d through=%d oldest=%d gap=%d more=%v polls=%v total=%d; want after=%d gap=%d polls=%v total=%d",
				tc.description, b.After, b.Through, b.Oldest, b.Gap, b.More, got, total, tc.after, tc.gap, tc.polls, tc.total)
		}
	}
	for query, want := range map[string]string{
		"?after=11&epoch=run-2":           "beyond the last poll 10",
		"?after=7&epoch=run-2&sampled=11": "beyond the last poll 10",
		"?after=7&epoch=run-2&sampled=-1": "sampled: want a poll sequence number",
		"?sampled=3":                      "after and epoch go together",
		"?after=x&epoch=run-2":            "after: want a poll sequence number",
		"?after=3":                        "after and epoch go together",
		"?after=0&sampled=0":              "after and epoch go together",
		"?after=00":                       "after and epoch go together",
		"?epoch=run-2":                    "after and epoch go together",
	} {
		if code, _, msg := ask(query); code != http.StatusBadRequest || !strings.Contains(msg, want) {
			t.Errorf("%s: status %d %q, want 400 with %q", query, code, msg, want)
		}
	}

	// A small bound (the response's, or the births' own): whole polls,
	// oldest first; the client continues from Through and gets the rest,
	// nothing twice. An answer that says More leaves the rows out (the
	// client takes them from the last one).
	one, _ := json.Marshal(birthPoll(5, 1))
	bound := len(one)*2 + len(one)/2
	row := api.Namespace{Inode: 7, Connections: []api.Conn{{State: "ESTABLISHED", Direction: "outbound"}}}
	tiny := ringSource{snap: &api.Snapshot{SchemaVersion: api.SchemaVersion, Epoch: "run-2", Seq: 10, Namespaces: []api.Namespace{}}, polls: src.polls}
	withRow := ringSource{snap: &api.Snapshot{SchemaVersion: api.SchemaVersion, Epoch: "run-2", Seq: 10,
		Namespaces: []api.Namespace{row}}, polls: src.polls}
	small, _ := NewServer(tiny, "t", bound)
	birthsOnly, _ := NewServer(withRow, "t", 0)
	birthsOnly.MaxBirthsBytes = bound
	for name, srv := range map[string]*Server{"response bound": small, "births bound": birthsOnly} {
		hs2 := httptest.NewServer(srv.Handler())
		var all []uint64
		after := uint64(4)
		for i := 0; i < 5; i++ {
			code, body, _ := get(t, fmt.Sprintf("%s/v1/snapshot?after=%d&epoch=run-2", hs2.URL, after), "Bearer t")
			if code != 200 {
				t.Fatalf("%s: status %d: %s", name, code, body)
			}
			head, b := splitBirths(t, body)
			var snap api.Snapshot
			if err := json.Unmarshal(head, &snap); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if wantRows := !b.More && srv == birthsOnly; (len(snap.Namespaces) == 1) != wantRows || snap.Namespaces == nil {
				t.Errorf("%s: more=%v with namespaces %+v, want the row only without more (and [] not null)", name, b.More, snap.Namespaces)
			}
			got, _ := seqs(b)
			all = append(all, got...)
			after = b.Through
			if !b.More {
				break
			}
			if len(got) != 2 {
				t.Errorf("%s: bounded answer has polls %v, want 2 whole polls", name, got)
			}
		}
		hs2.Close()
		if !slices.Equal(all, []uint64{5, 7, 8, 10}) || after != 10 {
			t.Errorf("%s: bounded paging gave %v through %d, want [5 7 8 10] through 10", name, all, after)
		}
	}
}

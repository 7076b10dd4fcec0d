package agent

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/livemap/servicemap/pkg/agent/api"
)

type staticSource struct{ s *api.Snapshot }

func (s staticSource) Last() *api.Snapshot { return s.s }

// bigSnapshot has two namespaces with n connections each, mixed states.
func bigSnapshot(n int) *api.Snapshot {
	s := &api.Snapshot{SchemaVersion: 1, Node: "n1", Seq: 7, TakenAt: time.Now().UTC(), PollSeconds: 5, Method: api.MethodNetlink}
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
	code, body, _ := get(t, hs.URL+"/v1/snapshot", "Bearer t")
	if code != 200 || len(body) > max {
		t.Fatalf("status %d, %d bytes", code, len(body))
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
	if !resp.Uncompressed || string(body) != string(plain) {
		t.Errorf("gzip: uncompressed=%v equal=%v", resp.Uncompressed, string(body) == string(plain))
	}
	// Explicitly without gzip.
	req.Header.Set("Accept-Encoding", "identity")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Header.Get("Content-Encoding") != "" || string(body) != string(plain) {
		t.Errorf("identity: %q", resp.Header.Get("Content-Encoding"))
	}
}

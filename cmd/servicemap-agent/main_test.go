package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/livemap/servicemap/pkg/agent/api"
)

// TestRun starts the agent on loopback, reads /healthz and /v1/snapshot
// and shuts it down gracefully.
func TestRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	var logs bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-listen", "127.0.0.1:0", "-token", "abc", "-poll-interval", "200ms", "-node", "n1"}, &logs, ready)
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("run: %v\n%s", err, logs.String())
	}
	base := "http://" + addr
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("healthz not ok: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	resp, err := http.Get(base + "/v1/snapshot")
	if err != nil || resp.StatusCode != 401 {
		t.Fatalf("no token: %v %v", err, resp)
	}
	resp.Body.Close()
	req, _ := http.NewRequest("GET", base+"/v1/snapshot", nil)
	req.Header.Set("Authorization", "Bearer abc")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var s api.Snapshot
	if resp.StatusCode != 200 || json.Unmarshal(body, &s) != nil || s.Node != "n1" || s.Seq < 1 || s.PollSeconds != 0.2 {
		t.Fatalf("snapshot %d %s", resp.StatusCode, body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no graceful shutdown")
	}
	if !strings.Contains(logs.String(), `"msg":"shutting down"`) {
		t.Errorf("logs: %s", logs.String())
	}
}

func TestRunFlags(t *testing.T) {
	t.Setenv("SERVICEMAP_AGENT_TOKEN", "")
	var logs bytes.Buffer
	if err := run(context.Background(), []string{"-listen", "127.0.0.1:0"}, &logs, nil); err == nil || !strings.Contains(err.Error(), "token") {
		t.Errorf("no token: %v", err)
	}
	if err := run(context.Background(), []string{"-token", "x", "-method", "bogus"}, &logs, nil); err == nil {
		t.Error("bad method accepted")
	}
}

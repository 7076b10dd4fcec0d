package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/livemap/servicemap/pkg/agent/api"
)

// TestRunGatewayOnly runs the agent as an unprivileged gateway sidecar
// (-tcp=false): no /v1/snapshot, /healthz ok, /v1/gateway serves the
// closed minutes of the access log.
func TestRunGatewayOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	old := time.Now().Add(-3 * time.Minute).UTC().Truncate(time.Minute)
	var lines strings.Builder
	for i := range 7 {
		status := 200
		if i == 3 {
			status = 500
		}
		fmt.Fprintf(&lines, `{"time":"%s","client":"10.9.0.%d","user":"","service":"shop:80","status":"%d","request_time":"0.004"}`+"\n",
			old.Add(time.Duration(i)*time.Second).Format(time.RFC3339), i, status)
	}
	lines.WriteString("oops\n")
	if err := os.WriteFile(path, []byte(lines.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan string, 1)
	var logs bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-listen", "127.0.0.1:0", "-token", "abc", "-node", "gw1", "-tcp=false",
			"-access-log", path, "-access-log-from-start", "-access-log-poll", "50ms", "-caller-cidr", "mesh=10.9.0.0/30"}, &logs, ready)
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("run: %v\n%s", err, logs.String())
	}
	get := func(path, token string) (int, []byte) {
		req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	if code, body := get("/healthz", ""); code != 200 || !strings.Contains(string(body), `"ok"`) {
		t.Fatalf("healthz %d %s", code, body)
	}
	if code, _ := get("/v1/snapshot", "abc"); code != 404 {
		t.Fatalf("/v1/snapshot without TCP polling: %d, want 404", code)
	}
	if code, _ := get("/v1/gateway", ""); code != 401 {
		t.Fatalf("/v1/gateway without token: %d", code)
	}
	var rep api.GatewayReport
	deadline := time.Now().Add(5 * time.Second)
	for rep.Lines.Parsed+rep.Lines.Bad < 8 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		code, body := get("/v1/gateway?after=0", "abc")
		if code != 200 {
			t.Fatalf("/v1/gateway %d %s", code, body)
		}
		rep = api.GatewayReport{}
		if err := json.Unmarshal(body, &rep); err != nil {
			t.Fatal(err)
		}
	}
	// Clients 10.9.0.0-3 are "mesh", 4-6 "user"; the minute is long closed.
	if rep.Node != "gw1" || rep.Lines.Parsed != 7 || rep.Lines.BadByReason["json"] != 1 || rep.LastSeq != 2 || len(rep.Buckets) != 2 {
		t.Fatalf("report %+v", rep)
	}
	m, u := rep.Buckets[0], rep.Buckets[1]
	if m.Caller != "mesh" || m.Service != "shop" || m.Calls != 4 || m.Errors != 1 || !m.Minute.Equal(old) ||
		u.Caller != "user" || u.Calls != 3 || u.Errors != 0 || u.LatencySumMs != 12 {
		t.Fatalf("buckets %+v", rep.Buckets)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestRunGatewayFlagErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-tcp=false"}, "needs at least one -access-log"},
		{[]string{"-access-log", "x.log", "-caller-cidr", "nope"}, "want NAME=CIDR"},
		{[]string{"-access-log", "x.log", "-caller-cidr", "a=10.0.0.0/99"}, "caller rule"},
		{[]string{"-access-log", "x.log", "-access-log-poll", "0s"}, "must be positive"},
	} {
		var logs bytes.Buffer
		err := run(context.Background(), append([]string{"-listen", "127.0.0.1:0", "-token", "t"}, c.args...), &logs, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: got %v, want %q", c.args, err, c.want)
		}
	}
}

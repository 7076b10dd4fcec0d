package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/livemap/servicemap/internal/testenv/testcert"
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

// TestRunTLS starts the agent with -tls-cert/-tls-key (real certificates
// made for the test) and fetches over HTTPS verified against the CA; a
// client that trusts another CA is refused, and so is plain HTTP.
func TestRunTLS(t *testing.T) {
	ca := testcert.NewCA(t, "agents CA")
	certPEM, keyPEM := ca.Issue(t, []string{"servicemap-agent.servicemap.svc"}, []net.IP{net.IPv4(127, 0, 0, 1)})
	certFile, keyFile := testcert.WritePair(t, certPEM, keyPEM)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan string, 1)
	var logs bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-listen", "127.0.0.1:0", "-token", "abc", "-poll-interval", "200ms", "-node", "n1",
			"-tls-cert", certFile, "-tls-key", keyFile}, &logs, ready)
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("run: %v\n%s", err, logs.String())
	}
	client := func(caPEM []byte) *http.Client {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(caPEM)
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	}
	get := func(c *http.Client, url string) (*http.Response, error) {
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("Authorization", "Bearer abc")
		return c.Do(req)
	}
	var s api.Snapshot
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := get(client(ca.PEM), "https://"+addr+"/v1/snapshot")
		if err != nil {
			t.Fatalf("https with the right CA: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 {
			if err := json.Unmarshal(body, &s); err != nil || s.Node != "n1" || s.Epoch == "" || s.Births == nil {
				t.Fatalf("snapshot over https: %v %.300s", err, body)
			}
			if resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
				t.Fatalf("not TLS 1.2+: %+v", resp.TLS)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	other := testcert.NewCA(t, "another CA")
	if _, err := get(client(other.PEM), "https://"+addr+"/v1/snapshot"); err == nil || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
		t.Errorf("https with the wrong CA: %v, want unknown authority", err)
	}
	if resp, err := get(http.DefaultClient, "http://"+addr+"/v1/snapshot"); err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Errorf("plain HTTP served a snapshot on the TLS port: %.100s", body)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestRunTLSFlags(t *testing.T) {
	var logs bytes.Buffer
	if err := run(context.Background(), []string{"-token", "x", "-tls-cert", "a.crt"}, &logs, nil); err == nil || !strings.Contains(err.Error(), "-tls-cert and -tls-key go together") {
		t.Errorf("cert without key: %v", err)
	}
	dir := t.TempDir()
	err := run(context.Background(), []string{"-token", "x", "-listen", "127.0.0.1:0", "-tls-cert", dir + "/missing.crt", "-tls-key", dir + "/missing.key"}, &logs, nil)
	if err == nil || !strings.Contains(err.Error(), "missing.crt") {
		t.Errorf("missing certificate file: %v", err)
	}
	if err := run(context.Background(), []string{"-token", "x", "-births-retention", "0s"}, &logs, nil); err == nil || !strings.Contains(err.Error(), "-births-retention") {
		t.Errorf("zero births retention: %v", err)
	}
}

package kube

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/livemap/servicemap/internal/testenv/testcert"
	"github.com/livemap/servicemap/pkg/agent"
	"github.com/livemap/servicemap/pkg/config"
)

// serveAgent serves the real agent HTTP handler over loopback, with TLS from
// the certificate files when given.
func serveAgent(t *testing.T, ag *agent.Agent, certPEM, keyPEM []byte) string {
	t.Helper()
	srv, err := agent.NewServer(ag, "agent-secret", 0)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if certPEM != nil {
		certFile, keyFile := testcert.WritePair(t, certPEM, keyPEM)
		certs, err := agent.LoadCertFiles(certFile, keyFile, nil)
		if err != nil {
			t.Fatal(err)
		}
		ln = tls.NewListener(ln, certs.TLSConfig())
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return ln.Addr().String()
}

// agentSource is a Source with just what fetching from agents needs (no
// informers): the settings and the agent client they configure.
func agentSource(t *testing.T, jsonData map[string]any, secure map[string]string) (*Source, error) {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"kubernetes": jsonData})
	s, err := config.Parse(b, secure)
	if err != nil {
		return nil, err
	}
	c, err := s.AgentHTTPClient()
	if err != nil {
		return nil, err
	}
	return &Source{settings: s, http: c, maxBytes: MaxSnapshotBytes, agentRuns: map[string]agentRun{}}, nil
}

// TestAgentTLS: with secure agentCACert the plugin speaks HTTPS to the
// agents and verifies their certificate (real certificates made with
// crypto/x509, the real agent server on loopback); an optional server name
// verifies a certificate that does not name the pod IP; a wrong CA or name
// is refused with an error naming the setting; http:// agents still work,
// with or without the CA.
func TestAgentTLS(t *testing.T) {
	ag := agent.New(agent.Config{Node: "node-tls", PollInterval: time.Second, ProcRoot: t.TempDir()})
	ag.Poll()
	ca := testcert.NewCA(t, "agents CA")
	other := testcert.NewCA(t, "someone else's CA")
	ipCert, ipKey := ca.Issue(t, nil, []net.IP{net.IPv4(127, 0, 0, 1)})
	byIP := serveAgent(t, ag, ipCert, ipKey)
	nameCert, nameKey := ca.Issue(t, []string{"servicemap-agent.servicemap.svc"}, nil)
	byName := serveAgent(t, ag, nameCert, nameKey)
	plain := serveAgent(t, ag, nil, nil)
	ctx := context.Background()

	for _, tc := range []struct {
		name     string
		addr     string
		kube     map[string]any
		secure   map[string]string
		wantErr  string // "" for a good snapshot
		wantNode string
	}{
		{"CA, certificate names the IP", byIP, nil, map[string]string{"agentCACert": string(ca.PEM)}, "", "node-tls"},
		{"CA and server name", byName, map[string]any{"agentTLSServerName": "servicemap-agent.servicemap.svc"}, map[string]string{"agentCACert": string(ca.PEM)}, "", "node-tls"},
		{"explicit https:// URL", "https://" + byIP, nil, map[string]string{"agentCACert": string(ca.PEM)}, "", "node-tls"},
		{"plain agent without CA", plain, nil, nil, "", "node-tls"},
		{"explicit http:// with a CA set", "http://" + plain, nil, map[string]string{"agentCACert": string(ca.PEM)}, "", "node-tls"},
		{"wrong CA", byIP, nil, map[string]string{"agentCACert": string(other.PEM)}, "not signed by the CA in secureJsonData agentCACert", ""},
		{"certificate without the IP, no server name", byName, nil, map[string]string{"agentCACert": string(ca.PEM)}, "set kubernetes.agentTLSServerName", ""},
		{"wrong server name", byName, map[string]any{"agentTLSServerName": "other.example"}, map[string]string{"agentCACert": string(ca.PEM)}, `not valid for kubernetes.agentTLSServerName "other.example"`, ""},
		{"https agent, no CA: system roots refuse it", "https://" + byIP, nil, nil, "put its CA in secureJsonData agentCACert", ""},
		{"bad address", "ftp://" + byIP, nil, nil, "want host:port, http://host:port or https://host:port", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			secure := map[string]string{"agentToken": "agent-secret"}
			for k, v := range tc.secure {
				secure[k] = v
			}
			src, err := agentSource(t, tc.kube, secure)
			if err != nil {
				t.Fatal(err)
			}
			snap, _, err := src.fetch(ctx, tc.addr, agentRun{}, false)
			if tc.wantErr == "" {
				if err != nil || snap.Node != tc.wantNode || snap.Epoch != ag.Epoch() || snap.Births == nil {
					t.Fatalf("fetch = %+v, %v", snap, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("fetch error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
	// "Save & test" (Check) fetches from the agents with the same settings.
	for _, tc := range []struct {
		ca      []byte
		wantErr string
	}{{ca.PEM, ""}, {other.PEM, "agent " + byIP + ": TLS: the agent's certificate is not signed by the CA in secureJsonData agentCACert"}} {
		src, err := agentSource(t, map[string]any{"staticAgents": []string{byIP}}, map[string]string{"agentToken": "agent-secret", "agentCACert": string(tc.ca)})
		if err != nil {
			t.Fatal(err)
		}
		err = src.checkAgents(ctx)
		if (tc.wantErr == "" && err != nil) || (tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr))) {
			t.Errorf("checkAgents = %v, want %q", err, tc.wantErr)
		}
	}
	if _, err := agentSource(t, nil, map[string]string{"agentCACert": "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n"}); err == nil || !strings.Contains(err.Error(), "agentCACert") {
		t.Errorf("a CA that is no certificate: %v", err)
	}
}

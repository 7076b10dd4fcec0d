package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/livemap/servicemap/pkg/agent/accesslog"
)

// benchAccessLog writes n nginx-like lines (20 services, 5,000 users, one
// minute) and returns the path.
func benchAccessLog(b *testing.B, n int, m0 time.Time) string {
	b.Helper()
	var sb strings.Builder
	for i := range n {
		fmt.Fprintf(&sb, `{"time":"%s","client":"10.1.%d.%d","user":"user-%d","service":"svc-%d:8080","upstream":"10.2.0.%d:8080","status":"%d","request_time":"0.%03d","content_type":"application/json","grpc_status":"","method":"GET","uri":"/api/v1/items/%d"}`+"\n",
			m0.Add(time.Duration(i%60)*time.Second).Format(time.RFC3339), i%250, i%200, i%5000, i%20, i%100, 200+(i%17/16)*303, i%997, i)
	}
	path := filepath.Join(b.TempDir(), "access.log")
	if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	return path
}

// BenchmarkGatewayTailFile: the whole path per line (read, split, parse,
// aggregate into minute buckets with latency sketch and HLL) over a file
// of 50,000 lines; compare ns/line with BenchmarkParse in
// pkg/agent/accesslog (parsing alone).
func BenchmarkGatewayTailFile(b *testing.B) {
	const n = 50000
	m0 := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	path := benchAccessLog(b, n, m0)
	clock := &fakeClock{t: m0.Add(30 * time.Second)}
	b.ReportAllocs()
	for b.Loop() {
		g, err := NewGateway(GatewayConfig{Paths: []string{path}, FromStart: true, Now: clock.Now,
			Parser: accesslog.Config{ClientKeyField: "user"}})
		if err != nil {
			b.Fatal(err)
		}
		g.PollOnce()
		if g.lines.Parsed != n {
			b.Fatalf("parsed %d", g.lines.Parsed)
		}
		for _, t := range g.tailers {
			t.close()
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/line")
}

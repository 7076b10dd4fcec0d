package accesslog

import (
	"encoding/json"
	"fmt"
	"testing"

	gojson "github.com/goccy/go-json"
)

// benchLines are lines as nginx writes them with the documented
// log_format (escape=json), with a realistic mix of services and fields.
func benchLines() [][]byte {
	var out [][]byte
	for i := 0; i < 64; i++ {
		ct, gs := "application/json", ""
		if i%4 == 0 {
			ct, gs = "application/grpc", "0"
		}
		out = append(out, fmt.Appendf(nil,
			`{"time":"2026-11-23T21:%02d:%02d+00:00","client":"10.1.%d.%d","user":"user-%d","service":"checkout-%d","upstream":"10.2.0.%d:8080","status":"%d","request_time":"0.%03d","content_type":"%s","grpc_status":"%s","method":"POST","uri":"/api/v1/orders/%d?expand=items","bytes":"%d","ua":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"}`,
			i%60, i%60, i%7, i, i*37, i%5, i%11, 200+(i%3)*151, i*13%1000, ct, gs, i, i*100))
	}
	return out
}

// BenchmarkParse is the production parser (fastjson) including validation.
func BenchmarkParse(b *testing.B) {
	lines := benchLines()
	p := mustParser(b, Config{ClientKeyField: DefaultClientKeyField})
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := p.Parse(lines[i%len(lines)]); err != nil {
			b.Fatal(err)
		}
	}
}

// The alternatives (buger/jsonparser was measured too, see
// docs/BENCHMARKS.md, and dropped) extract the same fields and then run the same
// validation (fields.record), so only the JSON part differs.

type stdFields struct {
	Time        string `json:"time"`
	Client      string `json:"client"`
	User        string `json:"user"`
	Service     string `json:"service"`
	Status      string `json:"status"`
	RequestTime string `json:"request_time"`
	ContentType string `json:"content_type"`
	GRPCStatus  string `json:"grpc_status"`
}

func (s *stdFields) fields() fields {
	return fields{time: []byte(s.Time), client: []byte(s.Client), clientKey: []byte(s.User), service: []byte(s.Service),
		status: []byte(s.Status), requestTime: []byte(s.RequestTime), contentType: []byte(s.ContentType), grpcStatus: []byte(s.GRPCStatus)}
}

// BenchmarkParseEncodingJSON: encoding/json into a fixed struct (it could
// not even honour a configurable client-key field name this way).
func BenchmarkParseEncodingJSON(b *testing.B) {
	lines := benchLines()
	cfg := Config{ClientKeyField: DefaultClientKeyField}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		var s stdFields
		if err := json.Unmarshal(lines[i%len(lines)], &s); err != nil {
			b.Fatal(err)
		}
		f := s.fields()
		if _, err := f.record(cfg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseGoccyJSON: goccy/go-json into the same struct.
func BenchmarkParseGoccyJSON(b *testing.B) {
	lines := benchLines()
	cfg := Config{ClientKeyField: DefaultClientKeyField}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		var s stdFields
		if err := gojson.Unmarshal(lines[i%len(lines)], &s); err != nil {
			b.Fatal(err)
		}
		f := s.fields()
		if _, err := f.record(cfg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseText: the text format (servicemap_text) of the same
// requests as benchLines.
func BenchmarkParseText(b *testing.B) {
	var lines [][]byte
	for i := 0; i < 64; i++ {
		ct, gs := "application/json", "-"
		if i%4 == 0 {
			ct, gs = "application/grpc", "0-"
		}
		lines = append(lines, fmt.Appendf(nil,
			`10.1.%d.%d - - [23/Nov/2026:21:%02d:%02d +0000] "POST /api/v1/orders/%d?expand=items HTTP/1.1" %d %d "-" "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36" 0.%03d "checkout-%d" "user-%d" "%s" "%s"`,
			i%7, i, i%60, i%60, i, 200+(i%3)*151, i*100, i*13%1000, i%5, i*37, ct, gs))
	}
	p := mustParser(b, Config{Format: FormatText})
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := p.Parse(lines[i%len(lines)]); err != nil {
			b.Fatal(err)
		}
	}
}

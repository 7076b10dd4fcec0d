package accesslog

import (
	"errors"
	"testing"
	"time"
)

func TestParseNginxLine(t *testing.T) {
	p := mustParser(t, Config{ClientKeyField: "user"})
	rec, err := p.Parse([]byte(`{"time":"2026-11-23T21:40:01+00:00","client":"10.0.0.7","user":"u-42","service":"checkout:8080","status":"503","request_time":"0.125","content_type":"application/json","grpc_status":""}`))
	if err != nil {
		t.Fatal(err)
	}
	want := Record{Time: time.Date(2026, 11, 23, 21, 40, 1, 0, time.UTC), Client: "10.0.0.7", ClientKey: "u-42",
		Service: "checkout", Status: 503, GRPC: -1, Duration: 0.125, Protocol: ProtoHTTP}
	if !rec.Time.Equal(want.Time) {
		t.Fatalf("time %v, want %v", rec.Time, want.Time)
	}
	rec.Time = want.Time
	if rec != want {
		t.Fatalf("got %+v\nwant %+v", rec, want)
	}
	if !rec.IsError() || rec.DurationMs() != 125 {
		t.Fatalf("IsError %v DurationMs %v", rec.IsError(), rec.DurationMs())
	}
}

func TestParseVariants(t *testing.T) {
	p := mustParser(t, Config{ClientKeyField: "user", DefaultService: "edge"})
	cases := []struct {
		name, line string
		check      func(Record) bool
	}{
		{"msec time and numeric status", `{"time":"1700000000.123","client":"1.2.3.4","service":"a","status":200,"request_time":0.002}`,
			func(r Record) bool {
				return r.Time.Equal(time.Unix(1700000000, 123e6)) && r.Status == 200 && r.DurationMs() == 2 && r.ClientKey == "1.2.3.4"
			}},
		{"grpc by content type, OK", `{"time":"1700000000.000","client":"1.2.3.4","service":"g","status":"200","request_time":"0.010","content_type":"application/grpc+proto","grpc_status":"0"}`,
			func(r Record) bool { return r.Protocol == ProtoGRPC && r.GRPC == 0 && !r.IsError() }},
		{"grpc error status", `{"time":"1700000000.000","client":"1.2.3.4","service":"g","status":"200","request_time":"0.010","grpc_status":"14"}`,
			func(r Record) bool { return r.Protocol == ProtoGRPC && r.GRPC == 14 && r.IsError() }},
		{"grpc content type without status", `{"time":"1700000000.000","client":"1.2.3.4","service":"g","status":"200","request_time":"0.010","content_type":"application/grpc"}`,
			func(r Record) bool { return r.Protocol == ProtoGRPC && r.GRPC == -1 && !r.IsError() }},
		{"not grpc: application/grpc-web-ish prefix", `{"time":"1700000000.000","client":"1.2.3.4","service":"g","status":"200","request_time":"0.010","content_type":"application/grpcx"}`,
			func(r Record) bool { return r.Protocol == ProtoHTTP }},
		{"4xx is not an error", `{"time":"1700000000.000","client":"1.2.3.4","service":"a","status":"404","request_time":"0.001"}`,
			func(r Record) bool { return !r.IsError() }},
		{"upstream-less goes to the default service", `{"time":"1700000000.000","client":"1.2.3.4","service":"","status":"301","request_time":"0.000"}`,
			func(r Record) bool { return r.Service == "edge" }},
		{"dash service also upstream-less", `{"time":"1700000000.000","client":"1.2.3.4","service":"-","status":"200","request_time":"0.000"}`,
			func(r Record) bool { return r.Service == "edge" }},
		{"empty user falls back to address", `{"time":"1700000000.000","client":"1.2.3.4","user":"","service":"a","status":"200","request_time":"0.000"}`,
			func(r Record) bool { return r.ClientKey == "1.2.3.4" }},
		{"ipv6 host keeps brackets", `{"time":"1700000000.000","client":"::1","service":"[::1]:8080","status":"200","request_time":"0.000"}`,
			func(r Record) bool { return r.Service == "[::1]" }},
		{"fractional zone time", `{"time":"2026-11-23T22:40:01.5+01:00","client":"::1","service":"a","status":"200","request_time":"0.000"}`,
			func(r Record) bool { return r.Time.Equal(time.Date(2026, 11, 23, 21, 40, 1, 5e8, time.UTC)) }},
	}
	for _, c := range cases {
		rec, err := p.Parse([]byte(c.line))
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if !c.check(rec) {
			t.Errorf("%s: unexpected %+v", c.name, rec)
		}
	}
}

func TestParseRejects(t *testing.T) {
	p := mustParser(t, Config{ClientKeyField: "user"})
	ok := `"client":"1.2.3.4","service":"a","status":"200","request_time":"0.001","time":"1700000000.000"`
	cases := map[string]string{
		`not json`:                ReasonJSON,
		`{"time":`:                ReasonJSON,
		`[1,2]`:                   ReasonJSON,
		`{` + ok + `,"x":1} junk`: ReasonJSON,
		`{"client":"1.2.3.4","service":"a","status":"200","request_time":"0.001"}`:                                ReasonBadTime,
		`{"client":"1.2.3.4","service":"a","status":"200","request_time":"0.001","time":"yesterday"}`:             ReasonBadTime,
		`{"client":"1.2.3.4","service":"a","status":"200","request_time":"0.001","time":"1700000000.1234567890"}`: ReasonBadTime,
		`{"client":"1.2.3.4","service":"a","status":"2000","request_time":"0.001","time":"1700000000.000"}`:       ReasonBadStatus,
		`{"client":"1.2.3.4","service":"a","status":"-","request_time":"0.001","time":"1700000000.000"}`:          ReasonBadStatus,
		`{"client":"1.2.3.4","service":"a","status":"200","request_time":"-1","time":"1700000000.000"}`:           ReasonBadDuration,
		`{"client":"1.2.3.4","service":"a","status":"200","time":"1700000000.000"}`:                               ReasonBadDuration,
		`{"client":"1.2.3.4","service":"","status":"200","request_time":"0.001","time":"1700000000.000"}`:         ReasonNoService,
		`{"client":"","service":"a","status":"200","request_time":"0.001","time":"1700000000.000"}`:               ReasonNoClient,
		`{` + ok + `,"grpc_status":"abc"}`: ReasonBadGRPC,
	}
	for line, reason := range cases {
		_, err := p.Parse([]byte(line))
		var le *LineError
		if !errors.As(err, &le) || le.Reason != reason {
			t.Errorf("%s: got %v, want reason %s", line, err, reason)
		}
	}
}

func TestServiceName(t *testing.T) {
	for in, want := range map[string]string{"checkout": "checkout", "checkout:8080": "checkout",
		"a.b.svc:80": "a.b.svc", "x:": "x:", ":80": ":80", "host:abc": "host:abc"} {
		if got := ServiceName(in); got != want {
			t.Errorf("ServiceName(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzParse: never panics, and a parsed record is always valid.
func FuzzParse(f *testing.F) {
	for _, l := range benchLines()[:4] {
		f.Add(l)
	}
	f.Add([]byte(`{"time":"1700000000.1","client":"a","service":"b:1","status":599,"request_time":1e300}`))
	f.Add([]byte(`{"time":"2026-11-23T21:40:01Z","client":"a","service":"-","status":"100","request_time":"0","grpc_status":"16"}`))
	p := mustParser(f, Config{ClientKeyField: "user"})
	f.Fuzz(func(t *testing.T, line []byte) {
		rec, err := p.Parse(line)
		if err != nil {
			var le *LineError
			if !errors.As(err, &le) || le.Reason == "" {
				t.Fatalf("error without reason: %v", err)
			}
			return
		}
		if rec.Status < 100 || rec.Status > 599 || rec.Duration < 0 || rec.Service == "" || rec.ClientKey == "" ||
			rec.Time.IsZero() || (rec.Protocol != ProtoHTTP && rec.Protocol != ProtoGRPC) {
			t.Fatalf("invalid record %+v from %q", rec, line)
		}
	})
}

func mustParser(tb testing.TB, cfg Config) *Parser {
	tb.Helper()
	p, err := NewParser(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

func TestParseText(t *testing.T) {
	p := mustParser(t, Config{Format: FormatText})
	rec, err := p.Parse([]byte(`203.0.113.7 - - [23/Nov/2026:22:40:01 +0100] "GET /cart/items?x=\x22y\x22 HTTP/1.1" 503 12 "-" "curl/8.0 \x22q\x22" 0.125 "cart:8080" "u\x2042" "application/json" "-"`))
	if err != nil {
		t.Fatal(err)
	}
	want := Record{Time: time.Date(2026, 11, 23, 21, 40, 1, 0, time.UTC), Client: "203.0.113.7", ClientKey: "u 42",
		Service: "cart", Status: 503, GRPC: -1, Duration: 0.125, Protocol: ProtoHTTP}
	if rec != want {
		t.Fatalf("got %+v\nwant %+v", rec, want)
	}
	rec, err = p.Parse([]byte(`::1 - bob [23/Nov/2026:21:40:01 +0000] "POST /orders.Orders/Get HTTP/2.0" 200 5 "-" "grpc-go" 0.002 "orders" "-" "application/grpc" "-14" extra "fields"`))
	if err != nil || rec.Protocol != ProtoGRPC || rec.GRPC != 14 || !rec.IsError() || rec.ClientKey != "::1" {
		t.Fatalf("grpc line: %+v %v", rec, err)
	}
	for line, reason := range map[string]string{
		`1.2.3.4 - - [23/Nov/2026:21:40:01 +0000] "GET / HTTP/1.1" 200 1 "-" "ua"`:                         ReasonFormat,
		`1.2.3.4 - - [23/Nov/2026:21:40:01 +0000] "GET / HTTP/1.1 200 1 "-" "ua" 0.1 "a" "-" "-" "-"`:      ReasonFormat,
		`1.2.3.4 - - [23/Nov/2026:21:40:01 +0000 "GET / HTTP/1.1" 200 1 "-" "ua" 0.1 "a" "-" "-" "-"`:      ReasonFormat,
		`1.2.3.4 - - [yesterday] "GET / HTTP/1.1" 200 1 "-" "ua" 0.1 "a" "-" "-" "-"`:                      ReasonBadTime,
		`1.2.3.4 - - [23/Nov/2026:21:40:01 +0000] "GET / HTTP/1.1" 200 1 "-" "ua" 0.1 "-" "-" "-" "-"`:     ReasonNoService,
		`1.2.3.4 - - [23/Nov/2026:21:40:01 +0000] "GET / HTTP/1.1" abc 1 "-" "ua" 0.1 "a" "-" "-" "-"`:     ReasonBadStatus,
		`{"time":"1700000000.000","client":"1.2.3.4","service":"a","status":"200","request_time":"0.001"}`: ReasonFormat,
	} {
		_, err := p.Parse([]byte(line))
		var le *LineError
		if !errors.As(err, &le) || le.Reason != reason {
			t.Errorf("%s: got %v, want reason %s", line, err, reason)
		}
	}
	if _, err := NewParser(Config{Format: "apache"}); err == nil {
		t.Error("unknown format accepted")
	}
}

// FuzzParseText: the text parser never panics; parsed records are valid.
func FuzzParseText(f *testing.F) {
	f.Add([]byte(`::1 - bob [23/Nov/2026:21:40:01 +0000] "POST /o HTTP/2.0" 200 5 "-" "g" 0.002 "orders" "-" "application/grpc" "14"`))
	f.Add([]byte(`1 - - [23/Nov/2026:21:40:01 +0000] "\x" 599 1 "-" "ua" 0.1 "a\x4" "\x41" "-" "-"`))
	p := mustParser(f, Config{Format: FormatText})
	f.Fuzz(func(t *testing.T, line []byte) {
		rec, err := p.Parse(line)
		if err != nil {
			var le *LineError
			if !errors.As(err, &le) || le.Reason == "" {
				t.Fatalf("error without reason: %v", err)
			}
			return
		}
		if rec.Status < 100 || rec.Status > 599 || rec.Duration < 0 || rec.Service == "" || rec.ClientKey == "" {
			t.Fatalf("invalid record %+v from %q", rec, line)
		}
	})
}

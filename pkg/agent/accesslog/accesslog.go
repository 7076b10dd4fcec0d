// Package accesslog parses API-gateway access-log lines (nginx's JSON
// log_format "servicemap", see docs/agent.md) into Records. It is the first
// step of the agent's gateway path: file tailer → Parser → aggregator.
package accesslog

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fastjson"
)

// Field names of the documented log_format.
const (
	FieldTime        = "time"         // $time_iso8601 or $msec
	FieldClient      = "client"       // $remote_addr
	FieldService     = "service"      // $proxy_host
	FieldStatus      = "status"       // $status
	FieldRequestTime = "request_time" // $request_time (seconds)
	FieldContentType = "content_type" // $content_type (request)
	FieldGRPCStatus  = "grpc_status"  // $upstream_trailer_grpc_status$upstream_http_grpc_status
)

// DefaultClientKeyField is the JSON field holding an optional client
// identity (e.g. "$http_x_user_id") used instead of the address to count
// distinct clients.
const DefaultClientKeyField = "user"

// Protocols of a Record.
const (
	ProtoHTTP = "http"
	ProtoGRPC = "grpc"
)

// Reasons a line is rejected (LineError.Reason). The tailer adds "too_long".
const (
	ReasonJSON        = "json"         // not a JSON object
	ReasonNoService   = "no_service"   // no upstream and no default service
	ReasonBadStatus   = "bad_status"   // missing or not an HTTP status 100..599
	ReasonBadTime     = "bad_time"     // missing or unparsable time
	ReasonBadDuration = "bad_duration" // missing, negative or unparsable request_time
	ReasonBadGRPC     = "bad_grpc_status"
	ReasonNoClient    = "no_client" // neither client address nor client key
)

// Record is one parsed request.
type Record struct {
	Time time.Time
	// Client is the client address as logged ($remote_addr).
	Client string
	// ClientKey identifies the client for distinct counting: the client
	// key field when set and non-empty, else Client.
	ClientKey string
	// Service is the upstream name without a ":port" suffix.
	Service  string
	Status   int
	GRPC     int // gRPC status, -1 when the line has none
	Duration float64
	Protocol string
}

// DurationMs is the request time in milliseconds.
func (r *Record) DurationMs() float64 { return r.Duration * 1000 }

// IsError reports whether the request counts as an error: a 5xx status, or
// a gRPC status other than OK (0). 4xx are the client's fault.
func (r *Record) IsError() bool { return r.Status >= 500 || r.GRPC > 0 }

// LineError is why a line was rejected.
type LineError struct {
	Reason string
	Detail string
}

func (e *LineError) Error() string {
	if e.Detail == "" {
		return "accesslog: " + e.Reason
	}
	return "accesslog: " + e.Reason + ": " + e.Detail
}

func lineErr(reason, detail string) *LineError { return &LineError{Reason: reason, Detail: detail} }

// Config configures a Parser.
type Config struct {
	// Format is FormatJSON (default, NginxConfig) or FormatText
	// (NginxTextConfig).
	Format string
	// ClientKeyField is the JSON field with the client identity; "" means
	// the address alone identifies a client.
	ClientKeyField string
	// DefaultService names requests the gateway answered itself (empty or
	// "-" service). Empty: such lines are rejected with ReasonNoService.
	DefaultService string
}

// Parser parses lines. It reuses buffers: not safe for concurrent use; the
// strings of a returned Record stay valid.
type Parser struct {
	cfg Config
	p   fastjson.Parser
}

// NewParser returns a parser for cfg.
func NewParser(cfg Config) (*Parser, error) {
	switch cfg.Format {
	case "":
		cfg.Format = FormatJSON
	case FormatJSON, FormatText:
	default:
		return nil, fmt.Errorf("accesslog: format %q: want %q or %q", cfg.Format, FormatJSON, FormatText)
	}
	return &Parser{cfg: cfg}, nil
}

// Parse parses one line (without its newline). On failure the error is a
// *LineError.
func (ps *Parser) Parse(line []byte) (Record, error) {
	var rec Record
	if ps.cfg.Format == FormatText {
		f, err := parseText(line)
		if err != nil {
			return rec, err
		}
		return f.record(ps.cfg)
	}
	v, err := ps.p.ParseBytes(line)
	if err != nil {
		return rec, lineErr(ReasonJSON, err.Error())
	}
	o, err := v.Object()
	if err != nil {
		return rec, lineErr(ReasonJSON, "not an object")
	}
	var f fields
	o.Visit(func(k []byte, v *fastjson.Value) {
		switch string(k) {
		case FieldTime:
			f.time = scalar(v)
		case FieldClient:
			f.client = scalar(v)
		case FieldService:
			f.service = scalar(v)
		case FieldStatus:
			f.status = scalar(v)
		case FieldRequestTime:
			f.requestTime = scalar(v)
		case FieldContentType:
			f.contentType = scalar(v)
		case FieldGRPCStatus:
			f.grpcStatus = scalar(v)
		}
		if ps.cfg.ClientKeyField != "" && string(k) == ps.cfg.ClientKeyField {
			f.clientKey = scalar(v)
		}
	})
	return f.record(ps.cfg)
}

// scalar returns a string's raw bytes or a number's text; other types give
// nil (treated as missing).
func scalar(v *fastjson.Value) []byte {
	switch v.Type() {
	case fastjson.TypeString:
		b, _ := v.StringBytes()
		return b
	case fastjson.TypeNumber:
		return []byte(v.String())
	}
	return nil
}

// fields are the raw values of one line, before validation.
type fields struct {
	at                                                                             time.Time // already parsed time (text format); else time is parsed
	time, client, clientKey, service, status, requestTime, contentType, grpcStatus []byte
}

func absent(b []byte) bool { return len(b) == 0 || (len(b) == 1 && b[0] == '-') }

func (f *fields) record(cfg Config) (Record, error) {
	var rec Record
	var err error
	rec.Time = f.at
	if f.at.IsZero() {
		if rec.Time, err = ParseTime(f.time); err != nil {
			return rec, err
		}
	}
	st, err := strconv.Atoi(string(f.status))
	if err != nil || st < 100 || st > 599 {
		return rec, lineErr(ReasonBadStatus, strconv.Quote(string(f.status)))
	}
	rec.Status = st
	if rec.Duration, err = parseSeconds(f.requestTime); err != nil {
		return rec, err
	}
	rec.GRPC = -1
	if !absent(f.grpcStatus) {
		g, err := strconv.Atoi(string(f.grpcStatus))
		if err != nil || g < 0 || g > 16 {
			return rec, lineErr(ReasonBadGRPC, strconv.Quote(string(f.grpcStatus)))
		}
		rec.GRPC = g
	}
	rec.Protocol = ProtoHTTP
	if rec.GRPC >= 0 || isGRPCContentType(f.contentType) {
		rec.Protocol = ProtoGRPC
	}
	if absent(f.service) {
		if cfg.DefaultService == "" {
			return rec, lineErr(ReasonNoService, "")
		}
		rec.Service = cfg.DefaultService
	} else {
		rec.Service = ServiceName(string(f.service))
	}
	if !absent(f.client) {
		rec.Client = string(f.client)
	}
	rec.ClientKey = rec.Client
	if !absent(f.clientKey) {
		rec.ClientKey = string(f.clientKey)
	}
	if rec.ClientKey == "" {
		return rec, lineErr(ReasonNoClient, "")
	}
	return rec, nil
}

// isGRPCContentType matches application/grpc, application/grpc+proto, … .
func isGRPCContentType(ct []byte) bool {
	const p = "application/grpc"
	if len(ct) < len(p) || !bytes.EqualFold(ct[:len(p)], []byte(p)) {
		return false
	}
	return len(ct) == len(p) || ct[len(p)] == '+' || ct[len(p)] == ';'
}

// ServiceName strips a ":port" suffix (nginx's $proxy_host includes the
// port when proxy_pass names host:port) and keeps the name otherwise.
func ServiceName(s string) string {
	i := strings.LastIndexByte(s, ':')
	if i <= 0 || i == len(s)-1 {
		return s
	}
	for _, c := range s[i+1:] {
		if c < '0' || c > '9' {
			return s
		}
	}
	return s[:i]
}

// ParseTime accepts ISO-8601 with a zone ($time_iso8601, also fractional
// seconds) or Unix seconds with a fraction ($msec).
func ParseTime(b []byte) (time.Time, error) {
	if absent(b) {
		return time.Time{}, lineErr(ReasonBadTime, "missing")
	}
	if b[0] >= '0' && b[0] <= '9' && bytes.IndexByte(b, '-') < 0 {
		if t, ok := parseEpoch(b); ok {
			return t, nil
		}
		return time.Time{}, lineErr(ReasonBadTime, strconv.Quote(string(b)))
	}
	t, err := time.Parse(time.RFC3339Nano, string(b))
	if err != nil {
		return time.Time{}, lineErr(ReasonBadTime, strconv.Quote(string(b)))
	}
	return t, nil
}

// parseEpoch parses "1700000000" or "1700000000.123" exactly (no float
// rounding of the milliseconds).
func parseEpoch(b []byte) (time.Time, bool) {
	ip, fp, hasFrac := bytes.Cut(b, []byte{'.'})
	sec, err := strconv.ParseInt(string(ip), 10, 64)
	if err != nil || sec < 0 || sec > 1<<40 {
		return time.Time{}, false
	}
	var nsec int64
	if hasFrac {
		if len(fp) == 0 || len(fp) > 9 {
			return time.Time{}, false
		}
		for i := 0; i < 9; i++ {
			d := int64(0)
			if i < len(fp) {
				if fp[i] < '0' || fp[i] > '9' {
					return time.Time{}, false
				}
				d = int64(fp[i] - '0')
			}
			nsec = nsec*10 + d
		}
	}
	return time.Unix(sec, nsec).UTC(), true
}

// parseSeconds parses nginx's $request_time ("0.003").
func parseSeconds(b []byte) (float64, error) {
	if absent(b) {
		return 0, lineErr(ReasonBadDuration, "missing")
	}
	d, err := strconv.ParseFloat(string(b), 64)
	if err != nil || d < 0 || d != d || d > 1e7 {
		return 0, lineErr(ReasonBadDuration, strconv.Quote(string(b)))
	}
	return d, nil
}

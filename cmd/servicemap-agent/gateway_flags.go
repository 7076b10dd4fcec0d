package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/livemap/servicemap/pkg/agent"
	"github.com/livemap/servicemap/pkg/agent/accesslog"
)

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// gwFlags are the gateway access-log flags (docs/agent.md, "Gateway access
// logs").
type gwFlags struct {
	paths, callers listFlag
	fromStart      *bool
	format         *string
	clientField    *string
	defaultService *string
	poll           *time.Duration
	lateness       *time.Duration
	retention      *time.Duration
	rotateWait     *time.Duration
	maxLine        *int
	maxBuckets     *int
	maxHeld        *int
}

func gatewayFlags(fs *flag.FlagSet) *gwFlags {
	g := &gwFlags{}
	fs.Var(&g.paths, "access-log", "gateway access log to tail (nginx JSON log_format servicemap); repeatable")
	fs.Var(&g.callers, "caller-cidr", "NAME=CIDR: clients in CIDR are the caller NAME instead of \"user\"; repeatable, first match wins")
	g.fromStart = fs.Bool("access-log-from-start", false, "read access logs present at start from their beginning (default: from their end)")
	g.format = fs.String("access-log-format", accesslog.FormatJSON, "access-log line format: json (log_format servicemap) or combined (servicemap_text)")
	g.clientField = fs.String("access-log-client-field", accesslog.DefaultClientKeyField, "JSON field identifying a client for distinct counting (empty: client address only)")
	g.defaultService = fs.String("gateway-name", "", "service name for requests the gateway answered itself (no upstream); empty: such lines count as bad \"no_service\"")
	g.poll = fs.Duration("access-log-poll", agent.DefaultGatewayPoll, "how often access logs are read")
	g.lateness = fs.Duration("gateway-lateness", agent.DefaultGatewayLateness, "how long after a minute ends its lines are waited for before it is closed")
	g.retention = fs.Duration("gateway-retention", agent.DefaultGatewayRetention, "how long closed minute buckets are kept for clients")
	g.rotateWait = fs.Duration("access-log-rotate-wait", agent.DefaultGatewayRotateWait, "how long a rotated-away log is still read")
	g.maxLine = fs.Int("access-log-max-line", agent.DefaultGatewayMaxLine, "longest access-log line in bytes (longer: bad \"too_long\")")
	g.maxBuckets = fs.Int("gateway-max-buckets", agent.DefaultGatewayMaxBuckets, "most buckets in one /v1/gateway answer")
	g.maxHeld = fs.Int("gateway-max-held-bytes", agent.DefaultGatewayMaxHeld, "most closed buckets kept (estimated JSON bytes); oldest dropped first")
	return g
}

// build returns the gateway, or nil when no access log is configured.
func (g *gwFlags) build(node string, maxBytes int, log *slog.Logger) (*agent.Gateway, error) {
	if len(g.paths) == 0 {
		return nil, nil
	}
	cfg := agent.GatewayConfig{
		Node: node, Paths: g.paths, FromStart: *g.fromStart, MaxLine: *g.maxLine, MaxBuckets: *g.maxBuckets, MaxHeld: *g.maxHeld,
		MaxBytes: maxBytes, Logger: log, Poll: *g.poll, Lateness: *g.lateness, Retention: *g.retention,
		RotateWait: *g.rotateWait,
		Parser:     accesslog.Config{ClientKeyField: *g.clientField, DefaultService: *g.defaultService},
	}
	if *g.poll <= 0 || *g.retention <= 0 || *g.rotateWait < 0 || *g.lateness < 0 {
		return nil, errors.New("-access-log-poll and -gateway-retention must be positive, -gateway-lateness and -access-log-rotate-wait not negative")
	}
	for _, c := range g.callers {
		r, err := agent.ParseCallerRule(c)
		if err != nil {
			return nil, fmt.Errorf("-caller-cidr: %w", err)
		}
		cfg.Callers = append(cfg.Callers, r)
	}
	return agent.NewGateway(cfg)
}

// Package config turns a data source's jsonData and secureJsonData into
// validated settings. Every error names the field that is wrong.
package config

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/livemap/servicemap/pkg/model"
)

// Table shapes the trace source can read (see docs/tables.md).
const (
	ShapeCalls  = "calls"
	ShapeSpans  = "spans"
	ShapeCustom = "custom"
)

// Settings is the whole configuration of one data source instance.
type Settings struct {
	// PostgreSQL connection for the trace source
	Host                    string `json:"host"` // host:port
	Database                string `json:"database"`
	User                    string `json:"user"`
	SSLMode                 string `json:"sslMode"`
	StatementTimeoutSeconds int    `json:"statementTimeoutSeconds"`
	MaxConnections          int    `json:"maxConnections"`

	TableShape string `json:"tableShape"`
	Table      string `json:"table"`
	CustomSQL  string `json:"customSql"`

	RefreshIntervalSeconds int `json:"refreshIntervalSeconds"`
	RetentionHours         int `json:"retentionHours"`
	GracePeriodSeconds     int `json:"gracePeriodSeconds"`

	SLO       SLOSettings     `json:"slo"`
	TraceLink TraceLink       `json:"traceLink"`
	Kube      KubeSettings    `json:"kubernetes"`
	Gateway   GatewaySettings `json:"gateway"`
	Declared  string          `json:"declaredArchitecture"`
	Secrets   Secrets         `json:"-"`
	SLOs      model.SLOs      `json:"-"`
}

// SLOSettings are the health thresholds as configured.
type SLOSettings struct {
	ErrorRate       *float64      `json:"errorRate"`
	P99LatencyMs    *float64      `json:"p99LatencyMs"`
	WarningFraction *float64      `json:"warningFraction"`
	Overrides       []SLOOverride `json:"overrides"`
}

// SLOOverride changes the SLO of one service; unset fields keep the default.
type SLOOverride struct {
	Service      string   `json:"service"`
	ErrorRate    *float64 `json:"errorRate"`
	P99LatencyMs *float64 `json:"p99LatencyMs"`
}

// TraceLink says where node and edge links to traces go.
type TraceLink struct {
	Type          string `json:"type"` // none | tempo | jaeger | url
	DatasourceUID string `json:"datasourceUid"`
	URLTemplate   string `json:"urlTemplate"`
}

// KubeSettings configure the Kubernetes + TCP table source.
type KubeSettings struct {
	Enabled            bool           `json:"enabled"`
	Mode               string         `json:"mode"` // inCluster | url
	APIServerURL       string         `json:"apiServerUrl"`
	Namespaces         []string       `json:"namespaces"`
	AgentPort          int            `json:"agentPort"`
	AgentNamespace     string         `json:"agentNamespace"`
	AgentLabelSelector string         `json:"agentLabelSelector"`
	StaticAgents       []string       `json:"staticAgents"`
	ExternalCIDRs      []ExternalCIDR `json:"externalCidrs"`
	// AgentTLSServerName is the name the agents' certificate is verified
	// against (they are reached by pod IP); default: the dialed host.
	AgentTLSServerName string `json:"agentTLSServerName"`
}

// ExternalCIDR names addresses outside the cluster.
type ExternalCIDR struct {
	Name string `json:"name"`
	CIDR string `json:"cidr"`
}

// GatewaySettings configure the access-log source (docs/gateway.md).
type GatewaySettings struct {
	Enabled bool `json:"enabled"`
	// Table is the access-log table in the traces' PostgreSQL, read when
	// a host is set and ReadTable is not false.
	Table     string `json:"table"`
	ReadTable *bool  `json:"readTable"`
	// Agents are node agents' base URLs (http://host:port) serving
	// /v1/gateway. Empty: the agents the Kubernetes source discovers.
	Agents []string `json:"agents"`
	// CallerCIDRs name client addresses of table rows without a caller;
	// empty: kubernetes.externalCidrs.
	CallerCIDRs []ExternalCIDR `json:"callerCidrs"`
}

// GatewayReadsTable reports whether the gateway source reads the SQL table.
func (s *Settings) GatewayReadsTable() bool {
	return s.Gateway.Enabled && s.HasTraceSource() && (s.Gateway.ReadTable == nil || *s.Gateway.ReadTable)
}

// GatewayCallerCIDRs are the rules naming table rows' callers by address.
func (s *Settings) GatewayCallerCIDRs() []ExternalCIDR {
	if len(s.Gateway.CallerCIDRs) > 0 {
		return s.Gateway.CallerCIDRs
	}
	return s.Kube.ExternalCIDRs
}

// Secrets come only from secureJsonData.
type Secrets struct {
	Password      string
	TLSCACert     string
	TLSClientCert string
	TLSClientKey  string
	KubeToken     string
	KubeCACert    string
	AgentToken    string
	// AgentCACert (PEM) turns on HTTPS to the agents, verified against it.
	AgentCACert string
}

var identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$`)

// Parse reads and validates settings, filling defaults.
func Parse(jsonData []byte, secure map[string]string) (*Settings, error) {
	s := &Settings{}
	if len(strings.TrimSpace(string(jsonData))) > 0 {
		if err := json.Unmarshal(jsonData, s); err != nil {
			return nil, fmt.Errorf("settings: jsonData is not valid JSON of the expected shape: %w", err)
		}
	}
	s.Secrets = Secrets{
		Password: secure["password"], TLSCACert: secure["tlsCACert"], TLSClientCert: secure["tlsClientCert"],
		TLSClientKey: secure["tlsClientKey"], KubeToken: secure["kubeToken"], KubeCACert: secure["kubeCACert"],
		AgentToken: secure["agentToken"], AgentCACert: secure["agentCACert"],
	}
	s.defaults()
	if err := s.validate(); err != nil {
		return nil, fmt.Errorf("settings: %w", err)
	}
	return s, nil
}

func (s *Settings) defaults() {
	if s.SSLMode == "" {
		s.SSLMode = "require"
	}
	if s.StatementTimeoutSeconds == 0 {
		s.StatementTimeoutSeconds = 30
	}
	if s.MaxConnections == 0 {
		s.MaxConnections = 4
	}
	if s.TableShape == "" {
		s.TableShape = ShapeSpans
	}
	if s.Table == "" && s.TableShape != ShapeCustom {
		s.Table = s.TableShape
	}
	if s.RefreshIntervalSeconds == 0 {
		s.RefreshIntervalSeconds = 15
	}
	if s.RetentionHours == 0 {
		s.RetentionHours = 24
	}
	if s.GracePeriodSeconds == 0 {
		s.GracePeriodSeconds = 60
	}
	if s.TraceLink.Type == "" {
		s.TraceLink.Type = "none"
	}
	if s.Kube.Mode == "" {
		s.Kube.Mode = "inCluster"
	}
	if s.Kube.AgentPort == 0 {
		s.Kube.AgentPort = 9477 // the agent's default -listen port
	}
	if s.Gateway.Table == "" {
		s.Gateway.Table = "gateway_logs"
	}
}

func (s *Settings) validate() error {
	if s.Host != "" {
		if _, _, err := net.SplitHostPort(s.Host); err != nil {
			return fmt.Errorf("host: want host:port, got %q", s.Host)
		}
		if s.Database == "" {
			return fmt.Errorf("database: required when host is set")
		}
		if s.User == "" {
			return fmt.Errorf("user: required when host is set")
		}
	}
	switch s.SSLMode {
	case "disable", "require", "verify-ca", "verify-full":
	default:
		return fmt.Errorf("sslMode: want disable, require, verify-ca or verify-full, got %q", s.SSLMode)
	}
	if (s.SSLMode == "verify-ca" || s.SSLMode == "verify-full") && s.Secrets.TLSCACert == "" {
		return fmt.Errorf("tlsCACert: sslMode %s needs the CA certificate in secureJsonData", s.SSLMode)
	}
	if (s.Secrets.TLSClientCert == "") != (s.Secrets.TLSClientKey == "") {
		return fmt.Errorf("tlsClientCert/tlsClientKey: give both or neither")
	}
	for _, r := range []struct {
		name      string
		v, lo, hi int
	}{
		{"statementTimeoutSeconds", s.StatementTimeoutSeconds, 1, 3600},
		{"maxConnections", s.MaxConnections, 1, 100},
		{"refreshIntervalSeconds", s.RefreshIntervalSeconds, 1, 3600},
		{"retentionHours", s.RetentionHours, 1, 24 * 31},
		{"gracePeriodSeconds", s.GracePeriodSeconds, 0, 3600},
	} {
		if r.v < r.lo || r.v > r.hi {
			return fmt.Errorf("%s: want %d..%d, got %d", r.name, r.lo, r.hi, r.v)
		}
	}
	switch s.TableShape {
	case ShapeCalls, ShapeSpans:
		if !identifier.MatchString(s.Table) {
			return fmt.Errorf("table: %q is not a plain (optionally schema-qualified) table name", s.Table)
		}
	case ShapeCustom:
		if err := ValidateCustomSQL(s.CustomSQL); err != nil {
			return fmt.Errorf("customSql: %w", err)
		}
	default:
		return fmt.Errorf("tableShape: want calls, spans or custom, got %q", s.TableShape)
	}
	slos, err := s.SLO.resolve()
	if err != nil {
		return err
	}
	s.SLOs = slos
	switch s.TraceLink.Type {
	case "none":
	case "tempo", "jaeger":
		if s.TraceLink.DatasourceUID == "" {
			return fmt.Errorf("traceLink.datasourceUid: required for a %s link", s.TraceLink.Type)
		}
	case "url":
		if _, err := url.Parse(s.TraceLink.URLTemplate); err != nil || s.TraceLink.URLTemplate == "" {
			return fmt.Errorf("traceLink.urlTemplate: want a URL, got %q", s.TraceLink.URLTemplate)
		}
	default:
		return fmt.Errorf("traceLink.type: want none, tempo, jaeger or url, got %q", s.TraceLink.Type)
	}
	if s.Kube.Enabled {
		switch s.Kube.Mode {
		case "inCluster":
		case "url":
			if u, err := url.Parse(s.Kube.APIServerURL); err != nil || u.Scheme != "https" || u.Host == "" {
				return fmt.Errorf("kubernetes.apiServerUrl: want https://host:port, got %q", s.Kube.APIServerURL)
			}
			if s.Secrets.KubeToken == "" {
				return fmt.Errorf("kubeToken: the url mode needs a bearer token in secureJsonData")
			}
		default:
			return fmt.Errorf("kubernetes.mode: want inCluster or url, got %q", s.Kube.Mode)
		}
		for i, c := range s.Kube.ExternalCIDRs {
			if _, _, err := net.ParseCIDR(c.CIDR); err != nil || c.Name == "" {
				return fmt.Errorf("kubernetes.externalCidrs[%d]: want a name and a CIDR, got %q=%q", i, c.Name, c.CIDR)
			}
		}
		if s.Kube.AgentPort < 1 || s.Kube.AgentPort > 65535 {
			return fmt.Errorf("kubernetes.agentPort: want 1..65535, got %d", s.Kube.AgentPort)
		}
	}
	if s.Secrets.AgentCACert != "" {
		if _, err := s.AgentCAPool(); err != nil {
			return err
		}
	}
	if s.Gateway.Enabled {
		if err := s.validateGateway(); err != nil {
			return err
		}
	}
	return nil
}

func (s *Settings) validateGateway() error {
	g := &s.Gateway
	if !identifier.MatchString(g.Table) {
		return fmt.Errorf("gateway.table: %q is not a plain (optionally schema-qualified) table name", g.Table)
	}
	for i, a := range g.Agents {
		u, err := url.Parse(a)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return fmt.Errorf("gateway.agents[%d]: want a base URL such as http://10.0.0.7:9477, got %q", i, a)
		}
		if strings.HasSuffix(strings.TrimSuffix(u.Path, "/"), "/v1/gateway") {
			return fmt.Errorf("gateway.agents[%d]: give the agent's base URL without /v1/gateway, got %q", i, a)
		}
		g.Agents[i] = strings.TrimSuffix(a, "/") // a path prefix (behind a proxy) is kept
	}
	for i, c := range g.CallerCIDRs {
		if _, _, err := net.ParseCIDR(c.CIDR); err != nil || c.Name == "" {
			return fmt.Errorf("gateway.callerCidrs[%d]: want a name and a CIDR, got %q=%q", i, c.Name, c.CIDR)
		}
	}
	for i, c := range s.Kube.ExternalCIDRs { // used for gateway callers even with Kubernetes off
		if _, _, err := net.ParseCIDR(c.CIDR); err != nil || c.Name == "" {
			return fmt.Errorf("kubernetes.externalCidrs[%d]: want a name and a CIDR, got %q=%q", i, c.Name, c.CIDR)
		}
	}
	if !s.GatewayReadsTable() && len(g.Agents) == 0 && !s.Kube.Enabled {
		return fmt.Errorf("gateway.enabled: no evidence to read: set a PostgreSQL host (for gateway.table), gateway.agents, or enable kubernetes (its agents)")
	}
	return nil
}

func (c SLOSettings) resolve() (model.SLOs, error) {
	def := model.DefaultSLO
	if c.ErrorRate != nil {
		def.ErrorRate = *c.ErrorRate
	}
	if c.P99LatencyMs != nil {
		def.P99LatencyMs = *c.P99LatencyMs
	}
	if c.WarningFraction != nil {
		def.WarningFraction = *c.WarningFraction
	}
	if err := def.Validate(); err != nil {
		return model.SLOs{}, fmt.Errorf("slo.%w", err)
	}
	out := model.SLOs{Default: def, Overrides: map[string]model.SLO{}}
	for i, o := range c.Overrides {
		slo := def
		if o.Service == "" {
			return out, fmt.Errorf("slo.overrides[%d].service: required", i)
		}
		if o.ErrorRate != nil {
			slo.ErrorRate = *o.ErrorRate
		}
		if o.P99LatencyMs != nil {
			slo.P99LatencyMs = *o.P99LatencyMs
		}
		if err := slo.Validate(); err != nil {
			return out, fmt.Errorf("slo.overrides[%d] (%s).%w", i, o.Service, err)
		}
		out.Overrides[o.Service] = slo
	}
	return out, nil
}

// AgentCAPool parses secure agentCACert (nil, nil when it is not set).
func (s *Settings) AgentCAPool() (*x509.CertPool, error) {
	if s.Secrets.AgentCACert == "" {
		return nil, nil
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(s.Secrets.AgentCACert)) {
		return nil, fmt.Errorf("agentCACert: no PEM certificate in secureJsonData agentCACert")
	}
	return pool, nil
}

// AgentScheme is how node agents given as bare host:port are reached:
// https when agentCACert is set, else http.
func (s *Settings) AgentScheme() string {
	if s.Secrets.AgentCACert != "" {
		return "https"
	}
	return "http"
}

// AgentHTTPClient is the client for node agents, shared by the network and
// gateway sources: TLS verified against agentCACert (system roots when
// empty) and, when set, kubernetes.agentTLSServerName; no proxy (agents are
// reached directly, by pod IP); a timeout of two thirds of the refresh
// interval, between 1 s and 10 s.
func (s *Settings) AgentHTTPClient() (*http.Client, error) {
	pool, err := s.AgentCAPool()
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, ServerName: s.Kube.AgentTLSServerName, MinVersion: tls.VersionTLS12}
	timeout := min(10*time.Second, max(time.Second, s.RefreshInterval()*2/3))
	return &http.Client{Timeout: timeout, Transport: tr}, nil
}

// Retention as a duration.
func (s *Settings) Retention() time.Duration { return time.Duration(s.RetentionHours) * time.Hour }

// RefreshInterval as a duration.
func (s *Settings) RefreshInterval() time.Duration {
	return time.Duration(s.RefreshIntervalSeconds) * time.Second
}

// Grace is how late a span may arrive and still be counted.
func (s *Settings) Grace() time.Duration { return time.Duration(s.GracePeriodSeconds) * time.Second }

// HasTraceSource reports whether a PostgreSQL connection is configured.
func (s *Settings) HasTraceSource() bool { return s.Host != "" }

var timeMacro = regexp.MustCompile(`\$__time(?:Filter\(\s*[^)]+\)|From(?:\(\))?|To(?:\(\))?)`)

// ValidateCustomSQL checks that a custom query is bounded by the read window:
// without a time macro every refresh would re-read (and re-count) everything.
func ValidateCustomSQL(sql string) error {
	if strings.TrimSpace(sql) == "" {
		return fmt.Errorf("required for the custom table shape")
	}
	hasFilter := strings.Contains(sql, "$__timeFilter(")
	hasBoth := strings.Contains(sql, "$__timeFrom") && strings.Contains(sql, "$__timeTo")
	if !hasFilter && !hasBoth {
		return fmt.Errorf("must restrict rows to the read window with $__timeFilter(column) or both $__timeFrom and $__timeTo")
	}
	if strings.Contains(strings.TrimRight(strings.TrimSpace(sql), ";"), ";") {
		return fmt.Errorf("must be a single statement")
	}
	return nil
}

// ExpandMacros replaces the time macros with the $1 (from) and $2 (to)
// parameters.
func ExpandMacros(sql string) string {
	return timeMacro.ReplaceAllStringFunc(sql, func(m string) string {
		switch {
		case strings.HasPrefix(m, "$__timeFilter("):
			col := strings.TrimSpace(m[len("$__timeFilter(") : len(m)-1])
			return fmt.Sprintf("(%s >= $1 AND %s < $2)", col, col)
		case strings.HasPrefix(m, "$__timeFrom"):
			return "$1"
		default:
			return "$2"
		}
	})
}

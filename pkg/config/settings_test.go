package config

import (
	"strings"
	"testing"
)

func TestDefaults(t *testing.T) {
	s, err := Parse([]byte(`{"host":"db:5432","database":"traces","user":"grafana"}`), map[string]string{"password": "pw"})
	if err != nil {
		t.Fatal(err)
	}
	if s.TableShape != "spans" || s.Table != "spans" || s.SSLMode != "require" || s.RetentionHours != 24 ||
		s.RefreshIntervalSeconds != 15 || s.GracePeriodSeconds != 60 || s.StatementTimeoutSeconds != 30 {
		t.Errorf("defaults: %+v", s)
	}
	if s.Secrets.Password != "pw" {
		t.Errorf("password not taken from secureJsonData")
	}
	if s.SLOs.Default.ErrorRate != 0.01 || s.SLOs.Default.P99LatencyMs != 500 || s.SLOs.Default.WarningFraction != 0.8 {
		t.Errorf("default SLO %+v", s.SLOs.Default)
	}
}

func TestPasswordNeverFromJSONData(t *testing.T) {
	s, err := Parse([]byte(`{"host":"db:5432","database":"d","user":"u","password":"leaked"}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.Secrets.Password != "" {
		t.Errorf("password read from jsonData")
	}
}

func TestSLOOverrides(t *testing.T) {
	s, err := Parse([]byte(`{"slo":{"errorRate":0.02,"p99LatencyMs":300,"overrides":[{"service":"payments","errorRate":0.001}]}}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.SLOs.For("payments"); got.ErrorRate != 0.001 || got.P99LatencyMs != 300 || got.WarningFraction != 0.8 {
		t.Errorf("payments SLO %+v", got)
	}
	if got := s.SLOs.For("other"); got.ErrorRate != 0.02 {
		t.Errorf("default SLO %+v", got)
	}
}

func TestErrorsNameTheField(t *testing.T) {
	for _, tc := range []struct {
		json   string
		secure map[string]string
		want   string
	}{
		{`{"host":"db"}`, nil, "host:"},
		{`{"host":"db:5432","user":"u"}`, nil, "database:"},
		{`{"sslMode":"prefer"}`, nil, "sslMode:"},
		{`{"sslMode":"verify-full"}`, nil, "tlsCACert:"},
		{`{}`, map[string]string{"tlsClientCert": "x"}, "tlsClientCert/tlsClientKey"},
		{`{"tableShape":"rows"}`, nil, "tableShape:"},
		{`{}`, map[string]string{"agentCACert": "not a certificate"}, "agentCACert:"},
		{`{"tableShape":"calls","table":"calls; drop table x"}`, nil, "table:"},
		{`{"tableShape":"custom","customSql":"select * from calls"}`, nil, "customSql:"},
		{`{"retentionHours":-1}`, nil, "retentionHours:"},
		{`{"slo":{"errorRate":5}}`, nil, "slo.errorRate"},
		{`{"slo":{"overrides":[{"service":"a","p99LatencyMs":-3}]}}`, nil, "slo.overrides[0] (a).p99LatencyMs"},
		{`{"traceLink":{"type":"tempo"}}`, nil, "traceLink.datasourceUid"},
		{`{"kubernetes":{"enabled":true,"mode":"url","apiServerUrl":"http://x"}}`, nil, "kubernetes.apiServerUrl"},
		{`{"kubernetes":{"enabled":true,"externalCidrs":[{"name":"x","cidr":"nope"}]}}`, nil, "kubernetes.externalCidrs[0]"},
		{`{"retentionHours":"a day"}`, nil, "not valid JSON"},
		{`[1,2]`, nil, "not valid JSON"},
	} {
		_, err := Parse([]byte(tc.json), tc.secure)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one naming %q", tc.json, err, tc.want)
		}
	}
}

func TestExpandMacros(t *testing.T) {
	got := ExpandMacros(`SELECT * FROM c WHERE $__timeFilter(ts) AND x > $__timeFrom() AND y < $__timeTo`)
	want := `SELECT * FROM c WHERE (ts >= $1 AND ts < $2) AND x > $1 AND y < $2`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if err := ValidateCustomSQL("select 1; select 2 where $__timeFilter(t)"); err == nil {
		t.Errorf("two statements accepted")
	}
}

func TestGatewaySettings(t *testing.T) {
	pg := `"host":"db:5432","database":"d","user":"u",`
	s, err := Parse([]byte(`{`+pg+`"gateway":{"enabled":true,"agents":["http://10.0.0.7:9464/","https://gw.example:9464","http://proxy/agents/node-1/"]},
		"kubernetes":{"externalCidrs":[{"name":"partner","cidr":"203.0.113.0/24"}]}}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.Gateway.Table != "gateway_logs" || !s.GatewayReadsTable() || strings.Join(s.Gateway.Agents, ",") != "http://10.0.0.7:9464,https://gw.example:9464,http://proxy/agents/node-1" {
		t.Errorf("gateway defaults %+v", s.Gateway)
	}
	if c := s.GatewayCallerCIDRs(); len(c) != 1 || c[0].Name != "partner" {
		t.Errorf("caller CIDRs fall back to kubernetes.externalCidrs: %v", c)
	}
	s, err = Parse([]byte(`{`+pg+`"gateway":{"enabled":true,"readTable":false,"agents":["http://a:1"],"callerCidrs":[{"name":"office","cidr":"10.9.0.0/16"}]}}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.GatewayReadsTable() || s.GatewayCallerCIDRs()[0].Name != "office" {
		t.Errorf("readTable false / own CIDRs: %+v", s.Gateway)
	}
	for _, tc := range []struct{ json, want string }{
		{`{` + pg + `"gateway":{"enabled":true,"table":"x;y"}}`, "gateway.table:"},
		{`{"gateway":{"enabled":true,"agents":["10.0.0.7:9464"]}}`, "gateway.agents[0]:"},
		{`{"gateway":{"enabled":true,"agents":["http://a:1","ftp://b"]}}`, "gateway.agents[1]:"},
		{`{"gateway":{"enabled":true,"agents":["http://a:1/v1/gateway"]}}`, "gateway.agents[0]: give the agent's base URL without /v1/gateway"},
		{`{"gateway":{"enabled":true,"agents":["http://a:1?x=1"]}}`, "gateway.agents[0]:"},
		{`{"gateway":{"enabled":true,"agents":["http://a:1"],"callerCidrs":[{"name":"x","cidr":"nope"}]}}`, "gateway.callerCidrs[0]:"},
		{`{"gateway":{"enabled":true,"agents":["http://a:1"]},"kubernetes":{"externalCidrs":[{"cidr":"10.0.0.0/8"}]}}`, "kubernetes.externalCidrs[0]:"},
		{`{"gateway":{"enabled":true}}`, "gateway.enabled:"},
		{`{` + pg + `"gateway":{"enabled":true,"readTable":false}}`, "gateway.enabled:"},
	} {
		_, err := Parse([]byte(tc.json), nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one naming %s", tc.json, err, tc.want)
		}
	}
}

package config

import (
	"encoding/json"
	"os"
	"regexp"
	"testing"

	"sigs.k8s.io/yaml"
)

// The provisioned data source (provisioning/datasources/servicemap.yml) must
// be settings the plugin accepts, with the values it shows.
func TestProvisionedDatasourceParses(t *testing.T) {
	raw, err := os.ReadFile("../../provisioning/datasources/servicemap.yml")
	if err != nil {
		t.Fatal(err)
	}
	// Grafana expands $VARS from its environment before the plugin sees them.
	expanded := regexp.MustCompile(`\$[A-Z_]+`).ReplaceAllStringFunc(string(raw), func(v string) string {
		return map[string]string{"$SERVICEMAP_PG_HOST": "db:5432"}[v] + "x"
	})
	var file struct {
		Datasources []struct {
			Type           string            `json:"type"`
			JSONData       json.RawMessage   `json:"jsonData"`
			SecureJSONData map[string]string `json:"secureJsonData"`
		} `json:"datasources"`
	}
	if err := yaml.Unmarshal([]byte(expanded), &file); err != nil {
		t.Fatal(err)
	}
	if len(file.Datasources) != 1 || file.Datasources[0].Type != "livemap-servicemap-datasource" {
		t.Fatalf("datasources %+v", file.Datasources)
	}
	ds := file.Datasources[0]
	s, err := Parse(ds.JSONData, ds.SecureJSONData)
	if err != nil {
		t.Fatalf("provisioned settings refused: %v", err)
	}
	if s.Host != "db:5432x" || s.TableShape != "spans" || s.Table != "spans" || s.SLOs.Default.ErrorRate != 0.01 ||
		len(s.SLOs.Overrides) != 1 || s.Gateway.Enabled || s.Gateway.Table != "gateway_logs" || s.Secrets.Password != "x" {
		t.Errorf("provisioned settings read as %+v", s)
	}
}

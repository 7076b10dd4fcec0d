package plugin

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
)

type serviceEntry struct {
	Name      string `json:"name"`
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
}

// CallResource serves GET services: every node the store knows, for the
// query editor's pickers and template-variable queries.
func (d *Datasource) CallResource(_ context.Context, req *backend.CallResourceRequest, sender backend.CallResourceResponseSender) error {
	reply := func(status int, body any) error {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		return sender.Send(&backend.CallResourceResponse{Status: status, Body: b,
			Headers: map[string][]string{"Content-Type": {"application/json"}}})
	}
	if d.settingErr != nil {
		return reply(http.StatusBadRequest, map[string]string{"error": d.settingErr.Error()})
	}
	switch strings.Trim(req.Path, "/") {
	case "services":
		if req.Method != http.MethodGet {
			return reply(http.StatusMethodNotAllowed, map[string]string{"error": "use GET"})
		}
		u, err := url.Parse(req.URL)
		if err != nil {
			return reply(http.StatusBadRequest, map[string]string{"error": "malformed URL: " + err.Error()})
		}
		kind := u.Query().Get("kind")
		var out []serviceEntry
		for _, n := range d.store.Nodes() {
			if kind == "" || string(n.Kind) == kind {
				out = append(out, serviceEntry{Name: n.ID, Kind: string(n.Kind), Namespace: n.Namespace})
			}
		}
		slices.SortFunc(out, func(a, b serviceEntry) int { return strings.Compare(a.Name, b.Name) })
		if out == nil {
			out = []serviceEntry{}
		}
		return reply(http.StatusOK, map[string]any{"services": out})
	default:
		return reply(http.StatusNotFound, map[string]string{"error": "unknown resource " + req.Path + " (known: services)"})
	}
}

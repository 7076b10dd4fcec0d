package plugin

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
)

// CheckHealth checks every source's connection and schema and reports each
// source's last successful refresh.
func (d *Datasource) CheckHealth(ctx context.Context, _ *backend.CheckHealthRequest) (*backend.CheckHealthResult, error) {
	if d.settingErr != nil {
		return &backend.CheckHealthResult{Status: backend.HealthStatusError, Message: d.settingErr.Error()}, nil
	}
	if len(d.sources) == 0 {
		return &backend.CheckHealthResult{Status: backend.HealthStatusError,
			Message: "no source configured: set a PostgreSQL host for traces, or enable Kubernetes or the gateway source"}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var problems, lines []string
	for _, src := range d.sources {
		if err := src.Check(ctx); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", src.Kind(), err))
		}
	}
	for _, st := range d.store.Statuses() {
		last := "no successful refresh yet"
		if !st.LastSuccess.IsZero() {
			last = "last refresh " + st.LastSuccess.UTC().Format(time.RFC3339)
			if st.Detail != "" {
				last += " (" + st.Detail + ")"
			}
		}
		if st.Stale() {
			last += "; failing since " + st.FailingFrom.UTC().Format(time.RFC3339) + ": " + st.LastError
		}
		lines = append(lines, fmt.Sprintf("%s: %s", st.Source, last))
	}
	if len(problems) > 0 {
		return &backend.CheckHealthResult{Status: backend.HealthStatusError,
			Message: strings.Join(append(problems, lines...), "; ")}, nil
	}
	msg := "Data source is working"
	if len(lines) > 0 {
		msg += ". " + strings.Join(lines, "; ")
	}
	return &backend.CheckHealthResult{Status: backend.HealthStatusOk, Message: msg}, nil
}

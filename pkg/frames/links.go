// Package frames turns the domain graph into Grafana data frames. Every field
// name Grafana relies on (the node graph contract, alerting labels) lives in
// this package.
package frames

import (
	"github.com/grafana/grafana-plugin-sdk-go/data"
)

// Links says where the context-menu links of nodes and edges go.
type Links struct {
	// This data source, for "focus" and "impact" links back into the map.
	SelfUID, SelfName string
	// Trace links: "none", "tempo", "jaeger" or "url".
	TraceType          string
	TraceDatasourceUID string
	TraceURLTemplate   string
}

// nodeLinks are attached to the node id field; ${__data.fields.id} is the node.
func (l Links) nodeLinks() []data.DataLink {
	var links []data.DataLink
	if l.SelfUID != "" {
		links = append(links,
			l.self("Service map/Focus on this service", map[string]any{"queryType": "serviceMap", "service": "${__data.fields.id}", "depthUp": 2, "depthDown": 2}),
			l.self("Incident/Impact of this service", map[string]any{"queryType": "impact", "service": "${__data.fields.id}"}),
		)
	}
	switch l.TraceType {
	case "tempo":
		links = append(links, data.DataLink{Title: "Traces/Traces of this service", Internal: &data.InternalDataLink{
			DatasourceUID: l.TraceDatasourceUID,
			Query:         map[string]any{"queryType": "traceql", "query": `{resource.service.name="${__data.fields.id}"}`},
		}})
	case "jaeger":
		links = append(links, data.DataLink{Title: "Traces/Traces of this service", Internal: &data.InternalDataLink{
			DatasourceUID: l.TraceDatasourceUID,
			Query:         map[string]any{"queryType": "search", "service": "${__data.fields.id}"},
		}})
	case "url":
		links = append(links, data.DataLink{Title: "Traces/Traces of this service", URL: l.TraceURLTemplate, TargetBlank: true})
	}
	return links
}

// edgeLinks are attached to the edge id field; source and target are fields.
func (l Links) edgeLinks() []data.DataLink {
	var links []data.DataLink
	switch l.TraceType {
	case "tempo":
		links = append(links, data.DataLink{Title: "Traces/Calls on this edge", Internal: &data.InternalDataLink{
			DatasourceUID: l.TraceDatasourceUID,
			Query: map[string]any{"queryType": "traceql",
				"query": `{resource.service.name="${__data.fields.source}"} > {resource.service.name="${__data.fields.target}"}`},
		}})
	case "jaeger":
		links = append(links, data.DataLink{Title: "Traces/Calls on this edge", Internal: &data.InternalDataLink{
			DatasourceUID: l.TraceDatasourceUID,
			Query:         map[string]any{"queryType": "search", "service": "${__data.fields.source}"},
		}})
	case "url":
		links = append(links, data.DataLink{Title: "Traces/Calls on this edge", URL: l.TraceURLTemplate, TargetBlank: true})
	}
	if l.SelfUID != "" {
		links = append(links, l.self("Incident/Impact of the callee", map[string]any{"queryType": "impact", "service": "${__data.fields.target}"}))
	}
	return links
}

func (l Links) self(title string, query map[string]any) data.DataLink {
	return data.DataLink{Title: title, Internal: &data.InternalDataLink{DatasourceUID: l.SelfUID, DatasourceName: l.SelfName, Query: query}}
}

func notices(texts []string) []data.Notice {
	var out []data.Notice
	for _, t := range texts {
		out = append(out, data.Notice{Severity: data.NoticeSeverityWarning, Text: t})
	}
	return out
}

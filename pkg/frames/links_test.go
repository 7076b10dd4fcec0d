package frames

import (
	"fmt"
	"strings"
	"testing"

	"github.com/grafana/grafana-plugin-sdk-go/data"
)

// linkSummary renders links as "Group/Title -> uid:query" or "-> url".
func linkSummary(links []data.DataLink) []string {
	var out []string
	for _, l := range links {
		s := l.Title + " -> "
		if l.Internal != nil {
			s += l.Internal.DatasourceUID + ":" + queryText(l.Internal.Query)
		} else {
			s += l.URL
		}
		out = append(out, s)
	}
	return out
}

func queryText(q any) string {
	m, _ := q.(map[string]any)
	var parts []string
	for _, k := range []string{"queryType", "service", "query", "depthUp", "depthDown"} {
		if v, ok := m[k]; ok {
			parts = append(parts, k+"="+fmt.Sprint(v))
		}
	}
	return strings.Join(parts, " ")
}

func TestLinksPerTraceTarget(t *testing.T) {
	self := []string{
		"Service map/Focus on this service -> me:queryType=serviceMap service=${__data.fields.id} depthUp=2 depthDown=2",
		"Incident/Impact of this service -> me:queryType=impact service=${__data.fields.id}",
	}
	callee := "Incident/Impact of the callee -> me:queryType=impact service=${__data.fields.target}"
	for _, c := range []struct {
		name       string
		links      Links
		node, edge []string
	}{
		{"nothing configured", Links{}, nil, nil},
		{"self only", Links{SelfUID: "me", SelfName: "Service map"}, self, []string{callee}},
		{"tempo", Links{SelfUID: "me", TraceType: "tempo", TraceDatasourceUID: "tempo-uid"},
			append(self[:2:2], `Traces/Traces of this service -> tempo-uid:queryType=traceql query={resource.service.name="${__data.fields.id}"}`),
			[]string{`Traces/Calls on this edge -> tempo-uid:queryType=traceql query={resource.service.name="${__data.fields.source}"} > {resource.service.name="${__data.fields.target}"}`, callee}},
		{"jaeger", Links{TraceType: "jaeger", TraceDatasourceUID: "jaeger-uid"},
			[]string{"Traces/Traces of this service -> jaeger-uid:queryType=search service=${__data.fields.id}"},
			[]string{"Traces/Calls on this edge -> jaeger-uid:queryType=search service=${__data.fields.source}"}},
		{"url", Links{TraceType: "url", TraceURLTemplate: "https://traces.example/${__data.fields.id}"},
			[]string{"Traces/Traces of this service -> https://traces.example/${__data.fields.id}"},
			[]string{"Traces/Calls on this edge -> https://traces.example/${__data.fields.id}"}},
		{"none", Links{TraceType: "none", TraceDatasourceUID: "ignored"}, nil, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := linkSummary(c.links.nodeLinks()); strings.Join(got, "\n") != strings.Join(c.node, "\n") {
				t.Errorf("node links\n got %q\nwant %q", got, c.node)
			}
			if got := linkSummary(c.links.edgeLinks()); strings.Join(got, "\n") != strings.Join(c.edge, "\n") {
				t.Errorf("edge links\n got %q\nwant %q", got, c.edge)
			}
			// the node graph panel groups "Group/Title" in its context menu
			for _, l := range append(c.links.nodeLinks(), c.links.edgeLinks()...) {
				if !strings.Contains(l.Title, "/") {
					t.Errorf("link %q has no group", l.Title)
				}
				if l.URL != "" && !l.TargetBlank {
					t.Errorf("external link %q opens in the same tab", l.Title)
				}
				if l.Internal != nil && l.Internal.DatasourceUID == c.links.SelfUID && l.Internal.DatasourceName != c.links.SelfName {
					t.Errorf("self link %q names data source %q", l.Title, l.Internal.DatasourceName)
				}
			}
		})
	}
}

// The links ride on the id fields of the node graph frames.
func TestLinksOnTheIDFields(t *testing.T) {
	l := Links{SelfUID: "me", TraceType: "jaeger", TraceDatasourceUID: "j"}
	nodes, edges := NodeGraph(shop(), l, nil)
	if got, want := linkSummary(field(t, nodes, "id").Config.Links), linkSummary(l.nodeLinks()); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("node id links %q, want %q", got, want)
	}
	if got, want := linkSummary(field(t, edges, "id").Config.Links), linkSummary(l.edgeLinks()); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("edge id links %q, want %q", got, want)
	}
}

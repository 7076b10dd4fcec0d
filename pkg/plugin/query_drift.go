package plugin

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/livemap/servicemap/pkg/analysis"
	"github.com/livemap/servicemap/pkg/frames"
	"github.com/livemap/servicemap/pkg/model"
	"github.com/livemap/servicemap/pkg/source/kube"
)

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }

// DeclaredBySettings names the declaredArchitecture setting in the
// declared_by column of the drift_edges frame; NetworkPolicies are named
// "networkpolicy <namespace>/<name>".
const DeclaredBySettings = "declaredArchitecture"

// policySource is a source that reads declared edges from the cluster
// (the kube source's NetworkPolicies).
type policySource interface {
	DeclaredEdges() []kube.PolicyEdge
}

// drift compares what is declared — the union of the declaredArchitecture
// setting and the NetworkPolicies the Kubernetes source watches — with the
// map of the query range. drift_edges says which declaration each declared
// edge came from.
func (d *Datasource) drift(_ context.Context, q backend.DataQuery, query Query) backend.DataResponse {
	decl := &analysis.Declared{}
	by := map[model.EdgeKey][]string{}
	if strings.TrimSpace(d.settings.Declared) != "" {
		var err error
		if decl, err = analysis.ParseDeclared(d.settings.Declared); err != nil {
			return badRequest("drift query: declaredArchitecture: %v", err)
		}
		for _, k := range decl.Edges {
			by[k] = append(by[k], DeclaredBySettings)
		}
	}
	hasPolicySource := false
	for _, src := range d.sources {
		ps, ok := src.(policySource)
		if !ok {
			continue
		}
		hasPolicySource = true
		for _, e := range ps.DeclaredEdges() {
			if by[e.EdgeKey] == nil {
				decl.Edges = append(decl.Edges, e.EdgeKey)
			}
			for _, p := range e.Policies {
				by[e.EdgeKey] = append(by[e.EdgeKey], "networkpolicy "+p)
			}
		}
	}
	if len(decl.Edges) == 0 && len(decl.Services) == 0 {
		if hasPolicySource {
			return badRequest("drift query: nothing declared: no declaredArchitecture in the data source settings and no NetworkPolicy in the watched namespaces allows an edge between services")
		}
		return badRequest("drift query: no declared architecture: paste it (YAML) into declaredArchitecture in the data source settings, or enable the Kubernetes source to read NetworkPolicies")
	}
	slices.SortFunc(decl.Edges, func(a, b model.EdgeKey) int {
		return cmp.Or(strings.Compare(a.Source, b.Source), strings.Compare(a.Target, b.Target))
	})
	g, err := d.wholeGraph(q.TimeRange.From, q.TimeRange.To, query)
	if err != nil {
		return badRequest("%v", err)
	}
	r := decl.Drift(g)
	unused := map[model.EdgeKey]bool{}
	for _, k := range r.Unused {
		unused[k] = true
	}
	var matched []model.EdgeKey
	for _, k := range decl.Edges {
		if !unused[k] {
			matched = append(matched, k)
		}
	}
	fs := frames.Drift(r, matched, q.RefID, d.staleNotices())
	addDeclaredBy(fs, by)
	return selectFrames(q, fs)
}

// addDeclaredBy appends the declared_by column to drift_edges: the
// declarations behind each row ("" for undeclared edges), comma-separated.
func addDeclaredBy(fs data.Frames, by map[model.EdgeKey][]string) {
	for _, f := range fs {
		if f.Name != "drift_edges" {
			continue
		}
		src, _ := f.FieldByName("source")
		dst, _ := f.FieldByName("target")
		vals := make([]string, f.Rows())
		for i := range vals {
			vals[i] = strings.Join(by[model.EdgeKey{Source: src.At(i).(string), Target: dst.At(i).(string)}], ", ")
		}
		fld := data.NewField("declared_by", nil, vals)
		fld.Config = &data.FieldConfig{DisplayName: "Declared by"}
		f.Fields = append(f.Fields, fld)
	}
}

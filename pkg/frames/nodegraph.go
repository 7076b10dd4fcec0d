package frames

import (
	"math"
	"slices"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/livemap/servicemap/pkg/model"
)

// Colours of the success/error arcs, as Tempo's service graph paints them.
const (
	arcGreen = "green"
	arcRed   = "red"
)

// NodeGraph returns the nodes and edges frames of the Node Graph panel.
// Notices (stale sources) ride on both frames.
func NodeGraph(g *model.Graph, links Links, warnings []string) (nodes, edges *data.Frame) {
	return nodesFrame(g, links, warnings), edgesFrame(g, links, warnings)
}

func nodeGraphMeta(warnings []string) *data.FrameMeta {
	return &data.FrameMeta{PreferredVisualization: data.VisTypeNodeGraph, Notices: notices(warnings)}
}

func optional(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

func withConfig(f *data.Field, displayName, unit string) *data.Field {
	f.Config = &data.FieldConfig{DisplayName: displayName, Unit: unit}
	return f
}

func nodesFrame(g *model.Graph, links Links, warnings []string) *data.Frame {
	n := len(g.Nodes)
	secs := g.Seconds()
	var (
		ids, titles, subtitles, colors = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		kinds, namespaces, teams       = make([]string, n), make([]string, n), make([]string, n)
		tiers, deploys, sources        = make([]string, n), make([]string, n), make([]string, n)
		health                         = make([]string, n)
		rps                            = make([]float64, n)
		calls, errs                    = make([]int64, n), make([]int64, n)
		p99s, errRates, avgs           = make([]*float64, n), make([]*float64, n), make([]*float64, n)
		arcOK, arcErr                  = make([]float64, n), make([]float64, n)
	)
	// every attribute any node has becomes a detail__ column
	attrKeys := map[string]bool{}
	for _, node := range g.Nodes {
		for k := range node.Info.Attributes {
			attrKeys[k] = true
		}
	}
	keys := make([]string, 0, len(attrKeys))
	for k := range attrKeys {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	attrs := make([][]string, len(keys))
	for i := range attrs {
		attrs[i] = make([]string, n)
	}
	for i, node := range g.Nodes {
		info := node.Info
		ids[i], titles[i] = info.ID, info.DisplayTitle()
		subtitles[i] = subtitle(info)
		colors[i] = node.Health.Color()
		health[i] = node.Health.String()
		kinds[i], namespaces[i], teams[i], tiers[i] = string(info.Kind), info.Namespace, info.Team, info.Tier
		if !info.LastDeploy.IsZero() {
			deploys[i] = info.LastDeploy.UTC().Format(time.RFC3339)
		}
		sources[i] = node.Sources.String()
		rps[i] = node.Served.Rate(secs)
		calls[i], errs[i] = int64(node.Served.Calls), int64(node.Served.Errors)
		p99s[i] = optional(node.Served.P99Ms())
		avgs[i] = optional(node.Served.AvgLatencyMs())
		er := node.Served.ErrorRate()
		errRates[i] = optional(er)
		if !math.IsNaN(er) {
			arcOK[i], arcErr[i] = 1-er, er
		}
		for k, key := range keys {
			attrs[k][i] = info.Attributes[key]
		}
	}
	idField := data.NewField("id", nil, ids)
	idField.Config = &data.FieldConfig{Links: links.nodeLinks()}
	fields := []*data.Field{
		idField,
		data.NewField("title", nil, titles),
		data.NewField("subtitle", nil, subtitles),
		withConfig(data.NewField("mainstat", nil, rps), "Requests/s served", "reqps"),
		withConfig(data.NewField("secondarystat", nil, p99s), "p99 latency", "ms"),
		arc("arc__success", "Success", arcGreen, arcOK),
		arc("arc__errors", "Errors", arcRed, arcErr),
		data.NewField("color", nil, colors),
		withConfig(data.NewField("detail__health", nil, health), "Health", ""),
		withConfig(data.NewField("detail__kind", nil, kinds), "Kind", ""),
		withConfig(data.NewField("detail__namespace", nil, namespaces), "Namespace", ""),
		withConfig(data.NewField("detail__owner_team", nil, teams), "Owner team", ""),
		withConfig(data.NewField("detail__tier", nil, tiers), "Tier", ""),
		withConfig(data.NewField("detail__last_deploy", nil, deploys), "Last deploy", ""),
		withConfig(data.NewField("detail__sources", nil, sources), "Sources", ""),
		withConfig(data.NewField("detail__requests_per_second", nil, slices.Clone(rps)), "Requests/s served", "reqps"),
		withConfig(data.NewField("detail__calls", nil, calls), "Calls served in range", "short"),
		withConfig(data.NewField("detail__errors", nil, errs), "Failed calls served in range", "short"),
		withConfig(data.NewField("detail__error_rate", nil, errRates), "Error rate", "percentunit"),
		withConfig(data.NewField("detail__p99_latency_ms", nil, slices.Clone(p99s)), "p99 latency", "ms"),
		withConfig(data.NewField("detail__avg_latency_ms", nil, avgs), "Average latency", "ms"),
	}
	for k, key := range keys {
		fields = append(fields, withConfig(data.NewField("detail__"+key, nil, attrs[k]), key, ""))
	}
	f := data.NewFrame("nodes", fields...)
	f.Meta = nodeGraphMeta(warnings)
	return f
}

func subtitle(info model.NodeInfo) string {
	switch {
	case info.Team != "" && info.Tier != "":
		return info.Team + " / " + info.Tier
	case info.Team != "":
		return info.Team
	case info.Tier != "":
		return info.Tier
	}
	return string(info.Kind)
}

func arc(name, display, color string, values []float64) *data.Field {
	f := data.NewField(name, nil, values)
	f.Config = &data.FieldConfig{DisplayName: display, Color: map[string]any{"mode": "fixed", "fixedColor": color}}
	return f
}

func edgesFrame(g *model.Graph, links Links, warnings []string) *data.Frame {
	n := len(g.Edges)
	secs := g.Seconds()
	var (
		ids, srcs, dsts, colors, dashes = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		protocols, sources, health      = make([]string, n), make([]string, n), make([]string, n)
		rps, thickness                  = make([]float64, n), make([]float64, n)
		calls, errs                     = make([]int64, n), make([]int64, n)
		errRates, p99s, avgs            = make([]*float64, n), make([]*float64, n), make([]*float64, n)
		conns                           = make([]float64, n)
		lastSeen                        = make([]time.Time, n)
		breakers, retries, teams, tiers = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		deploys                         = make([]string, n)
	)
	var anyConns, anyBreaker, anyRetry, anyTeam, anyTier, anyDeploy bool
	for i, e := range g.Edges {
		ids[i], srcs[i], dsts[i] = e.Key.ID(), e.Key.Source, e.Key.Target
		colors[i], health[i] = e.Health.Color(), e.Health.String()
		rps[i] = e.Stats.Rate(secs)
		calls[i], errs[i] = int64(e.Stats.Calls), int64(e.Stats.Errors)
		thickness[i] = math.Min(8, 1+2*math.Log10(1+rps[i]))
		errRates[i] = optional(e.Stats.ErrorRate())
		p99s[i] = optional(e.Stats.P99Ms())
		avgs[i] = optional(e.Stats.AvgLatencyMs())
		conns[i] = float64(e.Stats.Connections)
		protocols[i], sources[i] = e.Info.Protocol, e.Sources.String()
		lastSeen[i] = e.LastSeen
		if e.Sources == model.SourceNetwork {
			dashes[i] = "4 2" // seen on the wire only: no request-level evidence
		}
		breakers[i], retries[i], teams[i], tiers[i] = e.Info.CircuitBreaker, e.Info.RetryPolicy, e.Info.OwnerTeam, e.Info.Tier
		if !e.Info.LastDeploy.IsZero() {
			deploys[i] = e.Info.LastDeploy.UTC().Format(time.RFC3339)
		}
		anyConns = anyConns || e.Stats.Connections > 0
		anyBreaker, anyRetry = anyBreaker || breakers[i] != "", anyRetry || retries[i] != ""
		anyTeam, anyTier, anyDeploy = anyTeam || teams[i] != "", anyTier || tiers[i] != "", anyDeploy || deploys[i] != ""
	}
	idField := data.NewField("id", nil, ids)
	idField.Config = &data.FieldConfig{Links: links.edgeLinks()}
	fields := []*data.Field{
		idField,
		data.NewField("source", nil, srcs),
		data.NewField("target", nil, dsts),
		withConfig(data.NewField("mainstat", nil, rps), "Requests/s", "reqps"),
		withConfig(data.NewField("secondarystat", nil, errRates), "Error rate", "percentunit"),
		data.NewField("color", nil, colors),
		data.NewField("thickness", nil, thickness),
		data.NewField("strokeDasharray", nil, dashes),
		withConfig(data.NewField("detail__requests_per_second", nil, slices.Clone(rps)), "Requests/s", "reqps"),
		withConfig(data.NewField("detail__calls", nil, calls), "Calls in range", "short"),
		withConfig(data.NewField("detail__errors", nil, errs), "Failed calls in range", "short"),
		withConfig(data.NewField("detail__error_rate", nil, slices.Clone(errRates)), "Error rate", "percentunit"),
		withConfig(data.NewField("detail__p99_latency_ms", nil, p99s), "p99 latency", "ms"),
		withConfig(data.NewField("detail__avg_latency_ms", nil, avgs), "Average latency", "ms"),
		withConfig(data.NewField("detail__protocol", nil, protocols), "Protocol", ""),
		withConfig(data.NewField("detail__health", nil, health), "Health", ""),
		withConfig(data.NewField("detail__sources", nil, sources), "Sources", ""),
		withConfig(data.NewField("detail__last_seen", nil, lastSeen), "Last seen", ""),
	}
	// the card's other edge facts appear once a source has learned them
	for _, opt := range []struct {
		on            bool
		name, display string
		values        any
	}{
		{anyConns, "detail__connections", "TCP connections", conns},
		{anyBreaker, "detail__circuit_breaker", "Circuit breaker", breakers},
		{anyRetry, "detail__retry_policy", "Retry policy", retries},
		{anyTeam, "detail__owner_team", "Owner team", teams},
		{anyTier, "detail__tier", "Tier", tiers},
		{anyDeploy, "detail__last_deploy", "Last deploy", deploys},
	} {
		if opt.on {
			fields = append(fields, withConfig(data.NewField(opt.name, nil, opt.values), opt.display, ""))
		}
	}
	f := data.NewFrame("edges", fields...)
	f.Meta = nodeGraphMeta(warnings)
	return f
}

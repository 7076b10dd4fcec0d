package plugin

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"
	"github.com/grafana/grafana-plugin-sdk-go/experimental"

	"github.com/livemap/servicemap/pkg/model"
	"github.com/livemap/servicemap/pkg/store"
)

// frameByName finds a frame of a response or fails.
func frameByName(t *testing.T, dr backend.DataResponse, name string) *data.Frame {
	t.Helper()
	for _, f := range dr.Frames {
		if f.Name == name {
			return f
		}
	}
	t.Fatalf("no frame %q in the response", name)
	return nil
}

// rows renders every row of a frame as "v1|v2|..." (nil as "-", floats %.4g).
func rows(t *testing.T, f *data.Frame, fields ...string) []string {
	t.Helper()
	var out []string
	for i := 0; i < f.Rows(); i++ {
		var cells []string
		for _, name := range fields {
			fld, _ := f.FieldByName(name)
			if fld == nil {
				t.Fatalf("frame %s has no field %s", f.Name, name)
			}
			v, ok := fld.ConcreteAt(i)
			switch {
			case !ok:
				cells = append(cells, "-")
			default:
				if x, isFloat := v.(float64); isFloat {
					cells = append(cells, fmt.Sprintf("%.4g", x))
				} else {
					cells = append(cells, fmt.Sprint(v))
				}
			}
		}
		out = append(out, strings.Join(cells, "|"))
	}
	return out
}

func wantRows(t *testing.T, f *data.Frame, want []string, fields ...string) {
	t.Helper()
	got := rows(t, f, fields...)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s (%s):\n got %q\nwant %q", f.Name, strings.Join(fields, ","), got, want)
	}
}

// lastHour asks one query of the last hour as refId A and fails on an error.
func (h *harness) lastHour(t *testing.T, queryType, model string) backend.DataResponse {
	t.Helper()
	dr := h.query(t, q("A", queryType, testNow.Add(-time.Hour), testNow, model)).Responses["A"]
	if dr.Error != nil {
		t.Fatalf("%s %s: %v", queryType, model, dr.Error)
	}
	return dr
}

// frameNames lists the names of a response's frames, comma-joined.
func frameNames(dr backend.DataResponse) string {
	var names []string
	for _, f := range dr.Frames {
		names = append(names, f.Name)
	}
	return strings.Join(names, ",")
}

func TestImpactOfCheckout(t *testing.T) {
	h := shopPlugin(t, nil)
	dr := h.lastHour(t, "impact", `{"service":"checkout"}`)
	experimental.CheckGoldenJSONResponse(t, "testdata", "impact", &dr, *update)

	for _, f := range dr.Frames {
		if f.RefID != "A" {
			t.Errorf("frame %s has refId %q", f.Name, f.RefID)
		}
	}
	if got := frameNames(dr); got != "nodes,edges,summary,dependents,root_cause,recovery_order" {
		t.Fatalf("frames %s", got)
	}
	for _, name := range []string{"summary", "dependents", "root_cause", "recovery_order"} {
		if v := frameByName(t, dr, name).Meta.PreferredVisualization; v != data.VisTypeTable {
			t.Errorf("%s prefers %q, want table", name, v)
		}
	}

	// the subgraph: affected set (checkout, frontend, payments) and the user entry point, not catalog
	nodes := frameByName(t, dr, "nodes")
	wantRows(t, nodes, []string{
		"checkout|target|true|#F2495C",
		"frontend|upstream dependent (1 hop)|false|#73BF69",
		"payments|root-cause path: likely origin|true|#F2495C",
		"user|entry point (2 hops)|false|#8e8e8e",
	}, "id", "detail__impact", "highlighted", "color")
	wantRows(t, frameByName(t, dr, "edges"), []string{
		"checkout->payments|true",
		"frontend->checkout|false",
		"user->frontend|false",
	}, "id", "highlighted")

	wantRows(t, frameByName(t, dr, "summary"), []string{
		"checkout|red|1 upstream service depends on checkout, 0 degraded|0|likely downstream: payments (via checkout → payments)|downstream|payments|no gateway data: blast radius in users unknown",
	}, "service", "health", "summary", "degraded", "root_cause", "cause", "culprit", "blast_radius")
	wantRows(t, frameByName(t, dr, "dependents"), []string{
		"frontend|service|1|green",
		"user|user|2|unknown",
	}, "service", "kind", "hops", "health")
	rc := rows(t, frameByName(t, dr, "root_cause"), "step", "source", "target", "calls", "error_rate", "health")
	if strings.Join(rc, "\n") != "1|checkout|payments|30|0|red" {
		t.Errorf("root cause %q", rc)
	}
	p99, _ := frameByName(t, dr, "root_cause").FieldByName("p99_ms")
	if v, _ := p99.ConcreteAt(0); v.(float64) < 891 || v.(float64) > 909 {
		t.Errorf("root-cause p99 %v, want 900 within 1 %%", v)
	}
	wantRows(t, frameByName(t, dr, "recovery_order"), []string{
		"1|1|payments|false|payments",
		"2|2|checkout|false|checkout",
		"3|3|frontend|false|frontend",
	}, "step", "wave", "services", "cycle", "label")

	// one table on its own, for a dashboard panel; several in the order named
	for model, want := range map[string]string{
		`{"service":"checkout","frame":"recovery_order"}`: "recovery_order",
		`{"service":"checkout","frame":"nodes, edges"}`:   "nodes,edges",
		`{"service":"checkout","frame":"summary,nodes"}`:  "summary,nodes",
	} {
		if got := frameNames(h.lastHour(t, "impact", model)); got != want {
			t.Errorf("%s: frames %s, want %s", model, got, want)
		}
	}
}

func TestIncidentBadInputStaysOnItsQuery(t *testing.T) {
	h := shopPlugin(t, nil)
	hour := testNow.Add(-time.Hour)
	resp := h.query(t,
		q("good", "impact", hour, testNow, `{"service":"frontend"}`),
		q("goodChanges", "changes", hour.Add(30*time.Minute), testNow, `{}`),
		q("missing", "impact", hour, testNow, `{}`),
		q("unknown", "impact", hour, testNow, `{"service":"nope"}`),
		q("baseline", "changes", hour, testNow, `{"baseline":"yesterday"}`),
		q("since", "changes", hour, testNow, `{"baseline":"since","since":"last tuesday"}`),
		q("noSince", "changes", hour, testNow, `{"baseline":"since"}`),
		q("feb30", "changes", hour, testNow, `{"baseline":"since","since":"2026-02-30"}`),
		q("noDeploy", "changes", hour, testNow, `{"baseline":"lastDeploy","service":"checkout"}`),
		q("deployService", "changes", hour, testNow, `{"baseline":"lastDeploy"}`),
		q("noDeclared", "drift", hour, testNow, `{}`),
		q("frame", "impact", hour, testNow, `{"service":"checkout","frame":"nope"}`),
		q("frameOfChanges", "changes", hour, testNow, `{"frame":"changes,summary"}`),
		q("emptyFrameName", "drift", hour, testNow, `{"frame":"drift_summary,"}`),
		q("frameOfMap", "serviceMap", hour, testNow, `{"frame":"nodes"}`),
		q("changesService", "changes", hour, testNow, `{"service":"nope"}`),
		q("changesDepth", "changes", hour, testNow, `{"service":"checkout","depthDown":11}`),
		q("sources", "impact", hour, testNow, `{"service":"checkout","sources":["dns"]}`),
	)
	for _, ref := range []string{"good", "goodChanges"} {
		if r := resp.Responses[ref]; r.Error != nil || len(r.Frames) == 0 {
			t.Fatalf("the good query %s suffered: %v", ref, r.Error)
		}
	}
	for ref, want := range map[string]string{
		"missing":        "the service field is required",
		"unknown":        `unknown service "nope"`,
		"baseline":       `unknown baseline "yesterday" (want previousRange, since or lastDeploy)`,
		"since":          `since: since must be an RFC3339 time such as 2026-11-23T10:00:00Z or a date such as 2026-11-23, got "last tuesday"`,
		"feb30":          `since: since must be an RFC3339 time such as 2026-11-23T10:00:00Z or a date such as 2026-11-23, got "2026-02-30"`,
		"noSince":        `since: baseline "since" needs the since field`,
		"noDeploy":       `service: the last deploy of "checkout" is unknown`,
		"deployService":  `service: baseline "lastDeploy" needs the service field`,
		"noDeclared":     "no declared architecture",
		"frame":          `impact query: frame: unknown frame "nope" (impact returns nodes, edges, summary, dependents, root_cause, recovery_order)`,
		"frameOfChanges": `changes query: frame: unknown frame "summary" (changes returns changes, nodes, edges)`,
		"emptyFrameName": `drift query: frame: unknown frame "" (drift returns drift_summary, drift_edges)`,
		"frameOfMap":     "frame: a serviceMap query answers with all its frames; the frame field is for impact, changes and drift queries",
		"changesService": `changes query: service: unknown service "nope"`,
		"changesDepth":   "depthUp and depthDown must be 0..10, got 2 and 11",
		"sources":        `unknown source "dns"`,
	} {
		r := resp.Responses[ref]
		if r.Error == nil || !strings.Contains(r.Error.Error(), want) {
			t.Errorf("%s: error %v, want %q", ref, r.Error, want)
		}
		if r.Status != backend.StatusBadRequest {
			t.Errorf("%s: status %v, want 400", ref, r.Status)
		}
	}
}

const shopDeclared = `# drawn a while ago
frontend: [checkout, search]
checkout: [payments]
search:
`

func TestDriftAgainstDeclaredArchitecture(t *testing.T) {
	h := shopPlugin(t, map[string]any{"declaredArchitecture": shopDeclared})
	dr := h.lastHour(t, "drift", `{}`)
	experimental.CheckGoldenJSONResponse(t, "testdata", "drift", &dr, *update)
	// observed without the user's calls: frontend->checkout, frontend->catalog, checkout->payments
	wantRows(t, frameByName(t, dr, "drift_summary"), []string{
		"3|3|2|0.6667|0.6667|catalog|search",
	}, "observed", "declared", "matched", "coverage", "still_seen", "added_services", "removed_services")
	wantRows(t, frameByName(t, dr, "drift_edges"), []string{
		"checkout|payments|matched",
		"frontend|catalog|undeclared",
		"frontend|checkout|matched",
		"frontend|search|unused",
	}, "source", "target", "status")
	sum, _ := frameByName(t, dr, "drift_summary").FieldByName("summary")
	if got := sum.At(0).(string); !strings.HasPrefix(got, "the declaration contains 67 % of observed dependencies, 67 % of declared dependencies are still seen") {
		t.Errorf("summary %q", got)
	}
}

func TestDriftNamesTheBadLine(t *testing.T) {
	h := serve(t, map[string]any{"declaredArchitecture": "frontend: [checkout]\ncheckout:\n  nested: map\n"}, nil)
	dr := h.query(t, q("A", "drift", testNow.Add(-time.Hour), testNow, `{}`)).Responses["A"]
	if dr.Error == nil || !strings.Contains(dr.Error.Error(), "declaredArchitecture: document 1, line 3") || dr.Status != backend.StatusBadRequest {
		t.Fatalf("error %v (status %v), want a 400 naming line 3", dr.Error, dr.Status)
	}
}

// newLocal builds a data source without any source, straight on its store.
func newLocal(t *testing.T) *Datasource {
	t.Helper()
	d, err := NewDatasourceWithOptions(context.Background(),
		backend.DataSourceInstanceSettings{UID: "servicemap", Name: "Service map", JSONData: json.RawMessage(`{}`)},
		Options{Now: func() time.Time { return testNow }})
	if err != nil || d.settingErr != nil {
		t.Fatal(err, d.settingErr)
	}
	t.Cleanup(d.Dispose)
	return d
}

func queryLocal(t *testing.T, d *Datasource, queries ...backend.DataQuery) *backend.QueryDataResponse {
	t.Helper()
	resp, err := d.QueryData(context.Background(), &backend.QueryDataRequest{Queries: queries})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// loadChanges: in the hour two hours ago a->b is clean and a->c is used; in
// the last hour a->b fails 5 % of calls, a->c is gone and a->d is new.
func loadChanges(t *testing.T, d *Datasource) {
	b := store.NewBatch(model.SourceTraces)
	add := func(from time.Time, src, dst string, n, failEvery int, ms float64) {
		for i := 0; i < n; i++ {
			at := from.Add(time.Duration(i) * 50 * time.Minute / time.Duration(n)).Add(time.Second)
			b.AddCall(model.EdgeKey{Source: src, Target: dst}, at, ms, failEvery > 0 && i%failEvery == 0)
		}
	}
	before, after := testNow.Add(-2*time.Hour), testNow.Add(-time.Hour)
	add(before, "a", "b", 100, 0, 50)
	add(before, "a", "c", 100, 0, 10)
	add(after, "a", "b", 100, 20, 50)
	add(after, "a", "d", 50, 0, 20)
	b.AddNode(model.NodeInfo{ID: "b", Namespace: "shop", Team: "payments-team", LastDeploy: testNow.Add(-time.Hour)})
	b.AddNode(model.NodeInfo{ID: "c", LastDeploy: testNow.Add(-3 * time.Hour)})
	d.Store().Apply(b)
}

func TestChangesBetweenTwoRanges(t *testing.T) {
	d := newLocal(t)
	loadChanges(t, d)
	hour := testNow.Add(-time.Hour)
	resp := queryLocal(t, d,
		q("prev", "changes", hour, testNow, `{}`),
		q("since", "changes", hour, testNow, `{"baseline":"since","since":"2026-11-23T11:00:00Z"}`),
		q("deploy", "changes", hour, testNow, `{"baseline":"lastDeploy","service":"b"}`),
		q("same", "changes", hour, testNow, `{"baseline":"since","since":"2026-11-23T12:00:00Z"}`),
	)
	want := []string{
		"node|b|changed|error rate 0.0 % → 5.0 % (+5.0 pp)|0|0.05",
		"node|c|removed||0|-",
		"node|d|added||-|0",
		"edge|a->b|changed|error rate 0.0 % → 5.0 % (+5.0 pp)|0|0.05",
		"edge|a->c|removed||0|-",
		"edge|a->d|added||-|0",
	}
	for _, ref := range []string{"prev", "since"} {
		dr := resp.Responses[ref]
		if dr.Error != nil {
			t.Fatalf("%s: %v", ref, dr.Error)
		}
		wantRows(t, frameByName(t, dr, "changes"), want, "kind", "id", "change", "reasons", "error_rate_before", "error_rate_after")
	}
	// since b's last deploy (an hour ago: the same baseline), around b only
	wantRows(t, frameByName(t, resp.Responses["deploy"], "changes"), []string{want[0], want[3]},
		"kind", "id", "change", "reasons", "error_rate_before", "error_rate_after")
	dr := resp.Responses["prev"]
	experimental.CheckGoldenJSONResponse(t, "testdata", "changes", &dr, *update)
	wantRows(t, frameByName(t, dr, "nodes"), []string{
		"a|unchanged|#8AB8FF|false",
		"b|changed: error rate 0.0 % → 5.0 % (+5.0 pp)|#FADE2A|true",
		"c|removed|#8e8e8e|true",
		"d|added|#73BF69|true",
	}, "id", "detail__change", "color", "highlighted")
	wantRows(t, frameByName(t, dr, "edges"), []string{
		"a->b|changed: error rate 0.0 % → 5.0 % (+5.0 pp)|#FADE2A|",
		"a->c|removed|#8e8e8e|6 3",
		"a->d|added|#73BF69|",
	}, "id", "detail__change", "color", "strokeDasharray")
	// the query range against itself: nothing changed
	if f := frameByName(t, resp.Responses["same"], "changes"); f.Rows() != 0 {
		t.Errorf("a range against itself: %q", rows(t, f, "id", "change"))
	}
}

func TestDeployAnnotations(t *testing.T) {
	d := newLocal(t)
	loadChanges(t, d)
	twoHours := testNow.Add(-2 * time.Hour)
	resp := queryLocal(t, d,
		q("all", "deployAnnotations", twoHours, testNow, `{}`),
		q("c", "deployAnnotations", twoHours, testNow, `{"service":"c"}`),
		q("old", "deployAnnotations", testNow.Add(-4*time.Hour), testNow, `{"service":"c"}`),
	)
	all := resp.Responses["all"]
	if all.Error != nil || len(all.Frames) != 1 {
		t.Fatalf("%v, %d frames", all.Error, len(all.Frames))
	}
	wantRows(t, all.Frames[0], []string{
		"2026-11-23 11:00:00 +0000 UTC|Deploy: b|b deployed at 2026-11-23T11:00:00Z in namespace shop (owner payments-team)|deploy,b,shop",
	}, "time", "title", "text", "tags")
	if n := resp.Responses["c"].Frames[0].Rows(); n != 0 {
		t.Errorf("c deployed 3 h ago, outside the range: %d rows", n)
	}
	wantRows(t, resp.Responses["old"].Frames[0], []string{"Deploy: c"}, "title")
}

// The shop exists only in the last hour, so against the hour before every
// node and edge of the compared part is new: what is compared shows exactly.
func TestChangesAroundAServiceThroughThePlugin(t *testing.T) {
	h := shopPlugin(t, nil)
	for _, c := range []struct {
		model string
		want  []string
	}{
		{`{}`, []string{ // the whole map
			"node|catalog|added", "node|checkout|added", "node|frontend|added", "node|payments|added", "node|user|added",
			"edge|checkout->payments|added", "edge|frontend->catalog|added", "edge|frontend->checkout|added", "edge|user->frontend|added",
		}},
		{`{"service":"checkout"}`, []string{ // two callers up, two callees down: not catalog
			"node|checkout|added", "node|frontend|added", "node|payments|added", "node|user|added",
			"edge|checkout->payments|added", "edge|frontend->checkout|added", "edge|user->frontend|added",
		}},
		{`{"service":"checkout","depthUp":1,"depthDown":0}`, []string{
			"node|checkout|added", "node|frontend|added",
			"edge|frontend->checkout|added",
		}},
		{`{"service":"payments","depthUp":0}`, []string{"node|payments|added"}},
		{`{"service":"checkout","baseline":"since","since":"2026-11-23T12:00:00Z"}`, nil}, // the range against itself
		{`{"service":"checkout","baseline":"since","since":"2026-11-23"}`, []string{ // midnight: nothing before
			"node|checkout|added", "node|frontend|added", "node|payments|added", "node|user|added",
			"edge|checkout->payments|added", "edge|frontend->checkout|added", "edge|user->frontend|added",
		}},
	} {
		dr := h.lastHour(t, "changes", c.model)
		wantRows(t, frameByName(t, dr, "changes"), c.want, "kind", "id", "change")
		// the node graph shows the same part of the map
		var ids []string
		for _, r := range c.want {
			if strings.HasPrefix(r, "node|") {
				ids = append(ids, strings.Split(r, "|")[1])
			}
		}
		if c.want == nil { // nothing changed: the graph is the compared part, all unchanged
			continue
		}
		wantRows(t, frameByName(t, dr, "nodes"), ids, "id")
	}
	// only the table, for a dashboard panel
	if got := frameNames(h.lastHour(t, "changes", `{"service":"checkout","frame":"changes"}`)); got != "changes" {
		t.Errorf("frames %s", got)
	}
}

// Around one service of loadChanges: b's caller a and the edge a->b, not
// the a->c and a->d churn elsewhere; around c, its removal.
func TestChangesAroundAService(t *testing.T) {
	d := newLocal(t)
	loadChanges(t, d)
	hour := testNow.Add(-time.Hour)
	resp := queryLocal(t, d,
		q("b", "changes", hour, testNow, `{"service":"b"}`),
		q("c", "changes", hour, testNow, `{"service":"c"}`),
		q("d", "changes", hour, testNow, `{"service":"d","baseline":"since","since":"2026-11-23T11:00:00Z"}`),
		q("a0", "changes", hour, testNow, `{"service":"a","depthDown":0}`),
		q("shop", "changes", hour, testNow, `{"namespace":"shop"}`), // b is the one service of namespace shop
	)
	for ref, want := range map[string][]string{
		"b": {
			"node|b|changed|error rate 0.0 % → 5.0 % (+5.0 pp)",
			"edge|a->b|changed|error rate 0.0 % → 5.0 % (+5.0 pp)",
		},
		"c":  {"node|c|removed|", "edge|a->c|removed|"},
		"d":  {"node|d|added|", "edge|a->d|added|"},
		"a0": nil, // a alone: its own served traffic (none) did not change
		"shop": {
			"node|b|changed|error rate 0.0 % → 5.0 % (+5.0 pp)",
			"edge|a->b|changed|error rate 0.0 % → 5.0 % (+5.0 pp)",
		},
	} {
		dr := resp.Responses[ref]
		if dr.Error != nil {
			t.Fatalf("%s: %v", ref, dr.Error)
		}
		wantRows(t, frameByName(t, dr, "changes"), want, "kind", "id", "change", "reasons")
	}
	// the graph of c's neighbourhood: a unchanged, c and its edge removed (dashed)
	c := resp.Responses["c"]
	wantRows(t, frameByName(t, c, "nodes"), []string{"a|unchanged", "c|removed"}, "id", "detail__change")
	wantRows(t, frameByName(t, c, "edges"), []string{"a->c|removed|6 3"}, "id", "detail__change", "strokeDasharray")
}

// Every query of the provisioned Incident dashboard is valid for the query
// model and returns the frames its panel expects ($service = checkout).
func TestIncidentDashboardQueries(t *testing.T) {
	raw, err := os.ReadFile("../../provisioning/dashboards/incident.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string            `json:"title"`
			Type    string            `json:"type"`
			Targets []json.RawMessage `json:"targets"`
		} `json:"panels"`
		Annotations struct {
			List []struct {
				Target json.RawMessage `json:"target"`
			} `json:"list"`
		} `json:"annotations"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatal(err)
	}
	h := shopPlugin(t, nil)
	checked := 0
	ask := func(title string, target json.RawMessage) {
		var head struct {
			QueryType, Frame, Baseline string
		}
		_ = json.Unmarshal(target, &head)
		model := strings.ReplaceAll(string(target), "$service", "checkout")
		dr := h.query(t, q("A", head.QueryType, testNow.Add(-time.Hour), testNow, model)).Responses["A"]
		checked++
		if head.Baseline == baselineLastDeploy {
			// the shop has no Kubernetes source: the panel says why it is empty
			if dr.Error == nil || !strings.Contains(dr.Error.Error(), `the last deploy of "checkout" is unknown`) {
				t.Errorf("%s: %v, want the unknown-deploy error", title, dr.Error)
			}
			return
		}
		if dr.Error != nil {
			t.Errorf("%s: %v", title, dr.Error)
			return
		}
		want := strings.ReplaceAll(head.Frame, " ", "")
		if head.QueryType == "deployAnnotations" {
			want = "annotations"
		}
		if got := frameNames(dr); want != "" && got != want {
			t.Errorf("%s: frames %s, want %s", title, got, want)
		}
	}
	for _, p := range dash.Panels {
		for _, target := range p.Targets {
			ask(p.Title, target)
		}
	}
	for _, a := range dash.Annotations.List {
		if len(a.Target) > 0 {
			ask("annotation", a.Target)
		}
	}
	if checked < 8 {
		t.Errorf("only %d dashboard queries found", checked)
	}
}

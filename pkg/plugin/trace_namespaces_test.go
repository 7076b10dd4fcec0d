package plugin

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/data"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/livemap/servicemap/internal/testenv/kubeapi"
	"github.com/livemap/servicemap/internal/testenv/postgres"
	"github.com/livemap/servicemap/pkg/source/traces"
)

// TestTraceSpansLandOnNamespacedKubernetesNodes: with Kubernetes on, a
// Service name used in two watched namespaces is two nodes on the network
// side (checkout.prod, checkout.staging), and spans carrying
// k8s.namespace.name land on those same nodes, while a name unique in the
// cluster (frontend, catalog) stays bare. A real kube-apiserver (read with
// the ClusterRole of deploy/plugin-rbac.yaml), a real PostgreSQL spans
// table, the plugin served over gRPC.
func TestTraceSpansLandOnNamespacedKubernetesNodes(t *testing.T) {
	kc := kubeapi.Start(t)
	kc.GrantRestricted(t, "../../deploy/plugin-rbac.yaml")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := kc.Objects(t, ctx)
	http := corev1.ServicePort{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}
	for _, ns := range []string{"prod", "staging"} {
		c.Namespace(ns)
		c.Service(ns, "checkout", map[string]string{"app": "checkout"}, http, nil)
	}
	c.Service("prod", "frontend", map[string]string{"app": "frontend"}, http, nil)
	c.Service("prod", "catalog", map[string]string{"app": "catalog"}, http, nil)

	pg := postgres.Start(t, postgres.Options{})
	db := pg.CreateDatabase(t, "shop")
	pg.Exec(t, db, traces.SpansDDL)
	conn := pg.Connect(t, db)
	defer conn.Close(context.Background())
	at := testNow.Add(-30 * time.Minute)
	n := 0
	ins := func(trace, id, parent, service, kind string, attrs, resource map[string]string) {
		t.Helper()
		n++
		var p any = parent
		if parent == "" {
			p = nil
		}
		a, _ := json.Marshal(attrs)
		r, _ := json.Marshal(resource)
		if _, err := conn.Exec(context.Background(), `INSERT INTO spans VALUES ($1,$2,$3,$4,'op',$5,$6,$7,'STATUS_CODE_OK',$8,$9)`,
			trace, id, p, service, kind, at.Add(time.Duration(n)*time.Second), int64(20e6), a, r); err != nil {
			t.Fatal(err)
		}
	}
	prod, staging := map[string]string{"k8s.namespace.name": "prod"}, map[string]string{"k8s.namespace.name": "staging"}
	get := map[string]string{"http.request.method": "GET"}
	// frontend (prod) calls checkout in prod twice and in staging once
	for i, ns := range []map[string]string{prod, prod, staging} {
		tr := strings.Repeat(string(rune('1'+i)), 32)
		ins(tr, "00000000000000a1", "", "frontend", "SPAN_KIND_SERVER", get, prod)
		ins(tr, "00000000000000a2", "00000000000000a1", "frontend", "SPAN_KIND_CLIENT", get, prod)
		ins(tr, "00000000000000b1", "00000000000000a2", "checkout", "SPAN_KIND_SERVER", get, ns)
	}
	// frontend → catalog (unique: bare), checkout (prod) → its database,
	// scoped by service.namespace as before
	tr := strings.Repeat("4", 32)
	ins(tr, "00000000000000a1", "", "frontend", "SPAN_KIND_CLIENT", get, prod)
	ins(tr, "00000000000000c1", "00000000000000a1", "catalog", "SPAN_KIND_SERVER", get, prod)
	tr = strings.Repeat("5", 32)
	ins(tr, "00000000000000b1", "", "checkout", "SPAN_KIND_SERVER", get, map[string]string{"k8s.namespace.name": "prod", "service.namespace": "shop"})
	ins(tr, "00000000000000b2", "00000000000000b1", "checkout", "SPAN_KIND_CLIENT",
		map[string]string{"db.system": "postgresql", "db.namespace": "orders"}, map[string]string{"k8s.namespace.name": "prod", "service.namespace": "shop"})
	// no namespace on the span: its service.name as it is
	tr = strings.Repeat("6", 32)
	ins(tr, "00000000000000a1", "", "frontend", "SPAN_KIND_CLIENT", get, nil)
	ins(tr, "00000000000000b1", "00000000000000a1", "checkout", "SPAN_KIND_SERVER", get, nil)

	h := serve(t, map[string]any{
		"host": pg.Addr, "database": db, "user": pg.User, "sslMode": "disable", "tableShape": "spans",
		"refreshIntervalSeconds": 1,
		"kubernetes": map[string]any{
			"enabled": true, "mode": "url", "apiServerUrl": kc.URL(), "namespaces": []string{"prod", "staging"},
		},
	}, map[string]string{"password": pg.Password, "kubeToken": kc.RestrictedToken(), "kubeCACert": string(kc.CACertPEM())})
	defer replaceInstance(t, h)

	want := []string{
		"checkout.prod->postgresql:orders@shop|checkout.prod|postgresql:orders@shop|1",
		"frontend->catalog|frontend|catalog|1",
		"frontend->checkout|frontend|checkout|1", // no namespace on the spans: as without Kubernetes
		"frontend->checkout.prod|frontend|checkout.prod|2",
		"frontend->checkout.staging|frontend|checkout.staging|1",
		"user->checkout.prod|user|checkout.prod|1",
		"user->frontend|user|frontend|3",
	}
	deadline := time.Now().Add(60 * time.Second)
	var got []string
	var nodes *data.Frame
	for {
		dr := h.query(t, q("A", "serviceMap", testNow.Add(-time.Hour), testNow, `{}`)).Responses["A"]
		if dr.Error != nil {
			t.Fatal(dr.Error)
		}
		if len(dr.Frames) == 2 {
			got = rows(t, dr.Frames[1], "id", "source", "target", "detail__calls")
			nodes = dr.Frames[0]
			if len(got) >= len(want) {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("edges %q after 60 s; health: %+v", got, h.health(t))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("edges\n got %q\nwant %q", got, want)
	}
	// the trace nodes are the Kubernetes Services' own (kind, namespace)
	wantRows(t, nodes, []string{"catalog|service|prod", "checkout|service|", "checkout.prod|service|prod", "checkout.staging|service|staging",
		"frontend|service|prod", "postgresql:orders@shop|database|", "user|user|"}, "id", "detail__kind", "detail__namespace")
}

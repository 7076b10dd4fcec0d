package gateway

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend/log"

	"github.com/livemap/servicemap/internal/testenv/postgres"
	"github.com/livemap/servicemap/pkg/config"
	"github.com/livemap/servicemap/pkg/model"
	"github.com/livemap/servicemap/pkg/store"
)

func TestGatewayDDLMatchesDocs(t *testing.T) {
	doc, err := os.ReadFile("../../../docs/tables.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), TableDDL) {
		t.Errorf("docs/tables.md does not contain the gateway_logs DDL exactly as pkg/source/gateway/table.go has it")
	}
}

// The table path on a real PostgreSQL: each row counted once over many
// refreshes, rows inside the grace period waited for, unusable rows counted.
func TestTableExactlyOnceOnPostgres(t *testing.T) {
	pg := postgres.Start(t, postgres.Options{})
	db := pg.CreateDatabase(t, "gw")
	pg.Exec(t, db, TableDDL)
	now := t0.Add(2 * time.Hour)
	clk := &now
	raw, _ := json.Marshal(map[string]any{"host": pg.Addr, "database": db, "user": pg.User, "sslMode": "disable", "tableShape": "calls",
		"gateway": map[string]any{"enabled": true}, "kubernetes": map[string]any{"externalCidrs": []map[string]string{{"name": "partner", "cidr": "203.0.113.0/24"}}}})
	s, err := config.Parse(raw, map[string]string{"password": pg.Password})
	if err != nil {
		t.Fatal(err)
	}
	st := store.New(store.Options{Retention: s.Retention(), Now: func() time.Time { return *clk }})
	src, err := New(s, st, log.DefaultLogger, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	src.SetClock(func() time.Time { return *clk })
	if err := src.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	ins := func(at time.Time, client string, key, caller any, service any, status any, grpc any) {
		pg.Exec(t, db, `INSERT INTO gateway_logs VALUES ($1,$2,$3,$4,$5,$6,10,'grpc',$7)`, at, client, key, caller, service, status, grpc)
	}
	ins(now.Add(-10*time.Minute), "198.51.100.1", "alice", nil, "orders.prod.svc.cluster.local:50051", 200, 0)
	ins(now.Add(-9*time.Minute), "198.51.100.2", "bob", nil, "orders:50051", 200, 14) // gRPC UNAVAILABLE: error
	ins(now.Add(-8*time.Minute), "203.0.113.7:5000", nil, nil, "orders", 200, 0)      // partner by CIDR
	ins(now.Add(-30*time.Second), "198.51.100.3", "carol", "batch-job", "orders", 200, 0)
	if err := src.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	// the last row is inside the grace period: not read yet
	if got := callsOn2(st, now); got["user->orders"] != [2]uint64{2, 1} || got["partner->orders"] != [2]uint64{1, 0} || len(got) != 2 {
		t.Fatalf("first refresh %v", got)
	}
	// it is read once the grace period has passed; refreshing again adds nothing
	now = now.Add(2 * time.Minute)
	ins(now.Add(-90*time.Second), "198.51.100.4", nil, nil, "", 200, nil) // no service: skipped, counted
	for range 3 {
		if err := src.Refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	got := callsOn2(st, now)
	if got["user->orders"] != [2]uint64{2, 1} || got["partner->orders"] != [2]uint64{1, 0} || got["batch-job->orders"] != [2]uint64{1, 0} {
		t.Fatalf("after more refreshes %v", got)
	}
	if e := st.EntryClients(now.Add(-time.Hour), now)["orders"].Estimate(); e != 4 {
		t.Errorf("orders clients %d, want 4 (alice, bob, 203.0.113.7:5000, carol)", e)
	}
	edges, nodes := st.Snapshot(now.Add(-time.Hour), now, model.AllSources)
	for _, e := range edges {
		if e.Info.Protocol != "gRPC" {
			t.Errorf("%v protocol %q", e.Key, e.Info.Protocol)
		}
	}
	if nodes["batch-job"].Kind != model.KindExternal || nodes["user"].Kind != model.KindUser {
		t.Errorf("kinds %v %v", nodes["batch-job"].Kind, nodes["user"].Kind)
	}
	if d := st.Statuses()[0].Detail; !strings.Contains(d, "4 requests, 1 rows without service or status skipped") {
		t.Errorf("detail %q", d)
	}
}

func callsOn2(st *store.Store, now time.Time) map[string][2]uint64 {
	edges, _ := st.Snapshot(now.Add(-3*time.Hour), now, model.AllSources)
	out := map[string][2]uint64{}
	for _, e := range edges {
		out[e.Key.Source+"->"+e.Key.Target] = [2]uint64{e.Stats.Calls, e.Stats.Errors}
	}
	return out
}

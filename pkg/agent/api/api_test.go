package api

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// TestJSONShape pins the wire names the plugin depends on.
func TestJSONShape(t *testing.T) {
	s := Snapshot{
		SchemaVersion: SchemaVersion, Epoch: "e", Node: "n", Seq: 2, TakenAt: time.Date(2026, 11, 23, 20, 0, 0, 0, time.UTC),
		PollSeconds: 5, SincePreviousSeconds: 5, Method: MethodNetlink,
		Namespaces: []Namespace{{
			Inode: 1, PIDs: []int{10}, PIDCount: 1, PodUID: "u", ContainerID: "c", HostNetwork: true,
			Method: MethodNetlink, FirstSeen: true, IPs: []string{"10.0.0.1"},
			Listeners:      []Listener{{Endpoint: Endpoint{IP: "0.0.0.0", Port: 80}, AcceptQueue: 1, Backlog: 2}},
			Connections:    []Conn{{Local: Endpoint{IP: "10.0.0.1", Port: 80}, Remote: Endpoint{IP: "10.0.0.2", Port: 5000}, State: "ESTABLISHED", Direction: Inbound, New: true}},
			Closed:         []Flow{{Direction: Outbound, Local: Endpoint{IP: "10.0.0.1"}, Remote: Endpoint{IP: "10.0.0.3", Port: 443}, ClosedSinceLastPoll: 3}},
			NewConnections: 1,
			Counters:       NSCounters{Valid: true, ActiveOpens: 1, Delta: &CounterDelta{ActiveOpens: 1, UnobservedOpens: 1}},
		}},
		Cost:       Cost{WallSeconds: 0.1, Methods: map[string]int{MethodNetlink: 1}},
		Errors:     map[string]int{"proc.bad_hex": 1},
		Truncated:  true,
		Truncation: &Truncation{MaxBytes: 1, TotalConnections: 2, KeptConnections: 1, DroppedConnections: 1},
		Births: &Births{After: 1, Through: 2, Sampled: 1, Oldest: 1, Gap: 1, More: true, Polls: []PollBirths{{
			Seq: 2, TakenAt: time.Date(2026, 11, 23, 20, 0, 0, 0, time.UTC), SincePreviousSeconds: 5,
			Namespaces: []NamespaceBirths{{Inode: 1, PodUID: "u", HostNetwork: true, IPs: []string{"10.0.0.1"},
				Closed:          []Flow{{Direction: Outbound, Local: Endpoint{IP: "10.0.0.1"}, Remote: Endpoint{IP: "10.0.0.3", Port: 443}, ClosedSinceLastPoll: 3}},
				ClosedUnsampled: []Flow{{Direction: Outbound, Local: Endpoint{IP: "10.0.0.1"}, Remote: Endpoint{IP: "10.0.0.3", Port: 443}, ClosedSinceLastPoll: 1}}}},
		}}},
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(b, &m)
	keys := func(v any) []string {
		var out []string
		for k := range v.(map[string]any) {
			out = append(out, k)
		}
		return sorted(out)
	}
	ns := m["namespaces"].([]any)[0].(map[string]any)
	conn := ns["connections"].([]any)[0]
	checks := []struct {
		got  []string
		want []string
	}{
		{keys(m), sorted([]string{"schemaVersion", "epoch", "births", "node", "seq", "takenAt", "pollSeconds", "sincePreviousSeconds", "method", "namespaces", "cost", "errors", "truncated", "truncation"})},
		{keys(ns), sorted([]string{"inode", "pids", "pidCount", "podUID", "containerID", "hostNetwork", "method", "firstSeen", "ips", "listeners", "connections", "closed", "newConnections", "counters"})},
		{keys(conn), sorted([]string{"local", "remote", "state", "direction", "new"})},
		{keys(ns["listeners"].([]any)[0]), sorted([]string{"ip", "port", "acceptQueue", "backlog"})},
		{keys(ns["closed"].([]any)[0]), sorted([]string{"direction", "local", "remote", "closedSinceLastPoll"})},
		{keys(ns["counters"]), sorted([]string{"valid", "activeOpens", "passiveOpens", "attemptFails", "estabResets", "currEstab", "listenOverflows", "listenDrops", "delta"})},
		{keys(m["cost"]), sorted([]string{"wallSeconds", "cpuUserSeconds", "cpuSystemSeconds", "pidsScanned", "namespacesRead", "socketsSeen", "methods", "errors"})},
		{keys(m["births"]), sorted([]string{"after", "through", "sampled", "oldest", "gap", "more", "polls"})},
		{keys(m["births"].(map[string]any)["polls"].([]any)[0]), sorted([]string{"seq", "takenAt", "sincePreviousSeconds", "namespaces"})},
		{keys(m["births"].(map[string]any)["polls"].([]any)[0].(map[string]any)["namespaces"].([]any)[0]), sorted([]string{"inode", "podUID", "hostNetwork", "ips", "closed", "closedUnsampled"})},
		{keys(m["truncation"]), sorted([]string{"maxBytes", "totalConnections", "keptConnections", "droppedConnections"})},
	}
	for i, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%d: got %v want %v", i, c.got, c.want)
		}
	}
	var back Snapshot
	if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back, s) {
		t.Errorf("round trip: %v\n%+v", err, back)
	}
}

func sorted(s []string) []string {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	return s
}

package agent

import (
	"net/netip"
	"reflect"
	"slices"
	"testing"

	"github.com/livemap/servicemap/pkg/agent/api"
)

func TestClassifyDirection(t *testing.T) {
	ap := netip.MustParseAddrPort
	rows := []sockRow{
		{Local: ap("10.0.0.1:80"), Remote: ap("0.0.0.0:0"), State: tcpListen},            // exact-IP listener
		{Local: ap("[::]:443"), Remote: ap("[::]:0"), State: tcpListen},                  // dual-stack wildcard
		{Local: ap("0.0.0.0:53"), Remote: ap("0.0.0.0:0"), State: tcpListen},             // IPv4 wildcard
		{Local: ap("10.0.0.1:80"), Remote: ap("10.0.0.9:5000"), State: tcpEstablished},   // inbound (exact)
		{Local: ap("10.0.0.2:80"), Remote: ap("10.0.0.9:5001"), State: tcpEstablished},   // other IP, port 80: outbound
		{Local: ap("10.0.0.1:443"), Remote: ap("10.0.0.9:5002"), State: tcpSynRecv},      // v4 on [::]: inbound
		{Local: ap("[fd00::1]:443"), Remote: ap("[fd00::9]:5003"), State: tcpCloseWait},  // inbound
		{Local: ap("[fd00::1]:53"), Remote: ap("[fd00::9]:5004"), State: tcpEstablished}, // 0.0.0.0 does not take IPv6: outbound
		{Local: ap("10.0.0.1:1000"), Remote: ap("10.0.0.9:80"), State: tcpTimeWait},      // low local port, not listening: outbound
		{Local: ap("10.0.0.1:5555"), Remote: ap("0.0.0.0:0"), State: tcpClose},           // CLOSE rows are dropped
	}
	var ns api.Namespace
	cur := &nsPrev{tuples: map[tuple]seen{}}
	classify(&ns, rows, nil, cur, 1)
	got := map[string]string{}
	for _, c := range ns.Connections {
		got[c.Local.IP+"|"+c.Remote.IP+"|"+c.State] = c.Direction
	}
	want := map[string]string{
		"10.0.0.1|10.0.0.9|ESTABLISHED": "inbound",
		"10.0.0.2|10.0.0.9|ESTABLISHED": "outbound",
		"10.0.0.1|10.0.0.9|SYN_RECV":    "inbound",
		"fd00::1|fd00::9|CLOSE_WAIT":    "inbound",
		"fd00::1|fd00::9|ESTABLISHED":   "outbound",
		"10.0.0.1|10.0.0.9|TIME_WAIT":   "outbound",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
	if len(ns.Listeners) != 3 || ns.NewConnections != 0 || ns.Closed != nil || len(cur.tuples) != 6 {
		t.Fatalf("listeners %v new %d closed %v tuples %d", ns.Listeners, ns.NewConnections, ns.Closed, len(cur.tuples))
	}

	// Second poll: two new TIME_WAIT rows to the same service aggregate,
	// an inbound one keeps the listen port and drops the peer's port.
	rows2 := append(rows[:9:9],
		sockRow{Local: ap("10.0.0.1:1001"), Remote: ap("10.0.0.9:80"), State: tcpTimeWait},
		sockRow{Local: ap("10.0.0.1:1002"), Remote: ap("10.0.0.9:80"), State: tcpTimeWait},
		sockRow{Local: ap("10.0.0.1:80"), Remote: ap("10.0.0.7:6000"), State: tcpTimeWait},
	)
	var ns2 api.Namespace
	cur2 := &nsPrev{tuples: map[tuple]seen{}}
	classify(&ns2, rows2, cur, cur2, 2)
	wantClosed := []api.Flow{
		{Direction: "inbound", Local: api.Endpoint{IP: "10.0.0.1", Port: 80}, Remote: api.Endpoint{IP: "10.0.0.7"}, ClosedSinceLastPoll: 1},
		{Direction: "outbound", Local: api.Endpoint{IP: "10.0.0.1"}, Remote: api.Endpoint{IP: "10.0.0.9", Port: 80}, ClosedSinceLastPoll: 2},
	}
	if !reflect.DeepEqual(ns2.Closed, wantClosed) || ns2.NewConnections != 3 {
		t.Fatalf("closed %+v new %d", ns2.Closed, ns2.NewConnections)
	}
	if len(cur2.ended) != 0 {
		t.Errorf("ended %+v: nothing seen before turned TIME_WAIT", cur2.ended)
	}

	// Third poll: the inbound connection seen since poll 1 and the outbound
	// one to 10.0.0.9:5001 turn TIME_WAIT: ended, with the poll that first
	// saw them; the births of poll 2, still TIME_WAIT, are neither.
	rows3 := slices.Clone(rows2)
	rows3[3].State = tcpTimeWait
	rows3[4].State = tcpTimeWait
	var ns3 api.Namespace
	cur3 := &nsPrev{tuples: map[tuple]seen{}}
	classify(&ns3, rows3, cur2, cur3, 3)
	wantEnded := []endedFlow{
		{Flow: api.Flow{Direction: "inbound", Local: api.Endpoint{IP: "10.0.0.1", Port: 80}, Remote: api.Endpoint{IP: "10.0.0.9"}, ClosedSinceLastPoll: 1}, first: 1},
		{Flow: api.Flow{Direction: "outbound", Local: api.Endpoint{IP: "10.0.0.2"}, Remote: api.Endpoint{IP: "10.0.0.9", Port: 5001}, ClosedSinceLastPoll: 1}, first: 1},
	}
	if !reflect.DeepEqual(cur3.ended, wantEnded) || ns3.Closed != nil {
		t.Fatalf("ended %+v closed %+v, want %+v", cur3.ended, ns3.Closed, wantEnded)
	}
	if got := unsampled(cur3.ended, 1); got != nil {
		t.Errorf("unsampled after poll 1 = %+v, want none (poll 1 showed them)", got)
	}
	if got := unsampled(cur3.ended, 0); len(got) != 2 {
		t.Errorf("unsampled after poll 0 = %+v, want both", got)
	}
}

package agent

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

const procHeader4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode                                                     \n"

// Real rows (little-endian host).
const (
	rowListen4 = "   0: 00000000:07E8 00000000:0000 0A 00000000:00000003 00:00000000 00000000     0        0 1662 1 000000007bdbb05d 100 0 0 10 0\n"
	rowTW4     = "   1: 0100007F:83CD 0100007F:88A0 06 00000000:00000000 03:00001224 00000000     0        0 0 3 000000009e8a1278\n"
	rowEst4    = "   2: 0203F40A:1F90 0202F40A:DC78 01 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 20 4 30 10 -1\n"
	rowEst6    = "   0: 0000000000000000FFFF00000203F40A:1F90 0000000000000000FFFF00000202F40A:DC78 01 00000000:00000000 00:00000000 00000000     0        0 9 1 0000000000000000 20 4 30 10 -1\n"
	rowLis6    = "   1: 440200FD000000000000000004000000:2382 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 10 1 0000000000000000 100 0 0 10 0\n"
)

func collect(data string, v6 bool) ([]sockRow, errCounts) {
	errs := errCounts{}
	var rows []sockRow
	parseProcNetTCP([]byte(data), v6, errs, func(r sockRow) { rows = append(rows, r) })
	return rows, errs
}

func TestParseProcNetTCPGood(t *testing.T) {
	rows, errs := collect(procHeader4+rowListen4+rowTW4+rowEst4, false)
	if len(errs) != 0 {
		t.Fatalf("errors %v", errs)
	}
	want := []sockRow{
		{Local: netip.MustParseAddrPort("0.0.0.0:2024"), Remote: netip.MustParseAddrPort("0.0.0.0:0"), State: tcpListen, RQueue: 3},
		{Local: netip.MustParseAddrPort("127.0.0.1:33741"), Remote: netip.MustParseAddrPort("127.0.0.1:34976"), State: tcpTimeWait},
		{Local: netip.MustParseAddrPort("10.244.3.2:8080"), Remote: netip.MustParseAddrPort("10.244.2.2:56440"), State: tcpEstablished},
	}
	if !reflect.DeepEqual(rows, want) {
		t.Fatalf("got %+v\nwant %+v", rows, want)
	}
	rows, errs = collect(rowEst6+rowLis6, true)
	if len(errs) != 0 {
		t.Fatalf("errors %v", errs)
	}
	want = []sockRow{
		// IPv4-mapped addresses are unmapped.
		{Local: netip.MustParseAddrPort("10.244.3.2:8080"), Remote: netip.MustParseAddrPort("10.244.2.2:56440"), State: tcpEstablished},
		{Local: netip.MustParseAddrPort("[fd00:244::4]:9090"), Remote: netip.MustParseAddrPort("[::]:0"), State: tcpListen},
	}
	if !reflect.DeepEqual(rows, want) {
		t.Fatalf("got %+v\nwant %+v", rows, want)
	}
}

// TestParseProcNetTCPMalformed: every malformed line is counted by reason
// and the good lines around it survive.
func TestParseProcNetTCPMalformed(t *testing.T) {
	cases := []struct {
		name   string
		line   string
		v6     bool
		reason string
	}{
		{"short line", "   3: 0100007F:83CD 0100007F:88A0 06 00000000:00000000\n", false, ErrProcShortLine},
		{"truncated mid-field", "   3: 0100007F:83\n", false, ErrProcShortLine},
		{"bad hex in address", "   3: 0100G07F:83CD 0100007F:88A0 01 00000000:00000000 00:00000000 00000000 0 0 1 1\n", false, ErrProcBadHex},
		{"bad hex in port", "   3: 0100007F:8ZCD 0100007F:88A0 01 00000000:00000000 00:00000000 00000000 0 0 1 1\n", false, ErrProcBadHex},
		{"bad hex in queue", "   3: 0100007F:83CD 0100007F:88A0 01 0000000X:00000000 00:00000000 00000000 0 0 1 1\n", false, ErrProcBadHex},
		{"bad hex in sl", "   z: 0100007F:83CD 0100007F:88A0 01 00000000:00000000 00:00000000 00000000 0 0 1 1\n", false, ErrProcBadHex},
		{"bad state 0", "   3: 0100007F:83CD 0100007F:88A0 00 00000000:00000000 00:00000000 00000000 0 0 1 1\n", false, ErrProcBadState},
		{"bad state 0D", "   3: 0100007F:83CD 0100007F:88A0 0D 00000000:00000000 00:00000000 00000000 0 0 1 1\n", false, ErrProcBadState},
		{"bad state huge", "   3: 0100007F:83CD 0100007F:88A0 1FF 00000000:00000000 00:00000000 00000000 0 0 1 1\n", false, ErrProcBadState},
		{"bad state hex", "   3: 0100007F:83CD 0100007F:88A0 QQ 00000000:00000000 00:00000000 00000000 0 0 1 1\n", false, ErrProcBadHex},
		{"no port colon", "   3: 0100007F83CD 0100007F:88A0 01 00000000:00000000 00:00000000 00000000 0 0 1 1\n", false, ErrProcBadAddress},
		{"v6 address in v4 file", strings.Replace(rowEst6, "   0:", "   3:", 1), false, ErrProcBadAddress},
		{"v4 address in v6 file", rowEst4, true, ErrProcBadAddress},
		{"port too long", "   3: 0100007F:183CD 0100007F:88A0 01 00000000:00000000 00:00000000 00000000 0 0 1 1\n", false, ErrProcBadAddress},
		{"no sl colon", "   3 0100007F:83CD 0100007F:88A0 01 00000000:00000000 00:00000000 00000000 0 0 1 1\n", false, ErrProcBadAddress},
		{"queue without colon", "   3: 0100007F:83CD 0100007F:88A0 01 0000000000000000 00:00000000 00000000 0 0 1 1\n", false, ErrProcBadAddress},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			good1, good2 := rowListen4, rowEst4
			if tc.v6 {
				good1, good2 = rowEst6, rowLis6
			}
			rows, errs := collect(procHeader4+good1+tc.line+good2, tc.v6)
			if want := (errCounts{tc.reason: 1}); !reflect.DeepEqual(errs, want) {
				t.Errorf("errors %v, want %v", errs, want)
			}
			if len(rows) != 2 {
				t.Errorf("good rows: %d, want 2", len(rows))
			}
		})
	}
	// Several at once, counted per reason; no final newline.
	data := procHeader4 + rowListen4 + cases[0].line + cases[2].line + cases[3].line + cases[6].line + rowTW4 + strings.TrimSuffix(rowEst4, "\n")
	rows, errs := collect(data, false)
	want := errCounts{ErrProcShortLine: 1, ErrProcBadHex: 2, ErrProcBadState: 1}
	if !reflect.DeepEqual(errs, want) || len(rows) != 3 {
		t.Errorf("errors %v (want %v), rows %d (want 3)", errs, want, len(rows))
	}
}

func FuzzParseProcNetTCP(f *testing.F) {
	f.Add([]byte(procHeader4+rowListen4+rowTW4+rowEst4), false)
	f.Add([]byte(rowEst6+rowLis6), true)
	f.Add([]byte("   3: 0100007F:83CD 0100007F:88A0 06 00000000:00000000\n"), false)
	f.Add([]byte("   3: 0100G07F:83CD 0100007F:88A0 01 00000000:00000000 00:00000000 00000000 0 0 1 1"), false)
	f.Add([]byte("\n\n  sl\n :: : \t\t0:\n"), true)
	f.Fuzz(func(t *testing.T, data []byte, v6 bool) {
		errs := errCounts{}
		lines := 0
		for _, l := range strings.Split(string(data), "\n") {
			if strings.TrimSpace(l) != "" {
				lines++
			}
		}
		good := 0
		parseProcNetTCP(data, v6, errs, func(r sockRow) {
			good++
			if !validState(r.State) {
				t.Fatalf("invalid state %d emitted", r.State)
			}
			if r.Local.Addr().Is4() != r.Remote.Addr().Is4() && !v6 {
				t.Fatalf("mixed families in v4 file: %v", r)
			}
			if !r.Local.IsValid() || !r.Remote.IsValid() {
				t.Fatalf("invalid address emitted: %+v", r)
			}
		})
		bad := 0
		for _, n := range errs {
			bad += n
		}
		if good+bad > lines {
			t.Fatalf("%d good + %d bad rows from %d lines", good, bad, lines)
		}
	})
}

func TestParseMIB(t *testing.T) {
	data := "Ip: Forwarding DefaultTTL\nIp: 1 64\n" +
		"Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab\n" +
		"Tcp: 1 200 120000 -1 7 3 1 2 4\n" +
		"Udp: InDatagrams\nUdp: 5\n"
	got := map[string]int64{}
	errs := errCounts{}
	parseMIB([]byte(data), "Tcp:", errs, func(n string, v int64) { got[n] = v })
	if len(errs) != 0 || got["ActiveOpens"] != 7 || got["PassiveOpens"] != 3 || got["MaxConn"] != -1 || got["CurrEstab"] != 4 {
		t.Fatalf("got %v errs %v", got, errs)
	}
	errs = errCounts{}
	parseMIB([]byte("Tcp: A B\nTcp: 1\nTcp: C\nTcp: x\nTcp: D\n"), "Tcp:", errs, func(string, int64) {})
	if errs[ErrSNMPMalformed] != 3 {
		t.Fatalf("errs %v", errs)
	}
}

func TestParseCgroup(t *testing.T) {
	cases := []struct{ in, uid, cid string }{
		{"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1b2c3d4e_5f60_7182_93a4_b5c6d7e8f901.slice/cri-containerd-" + strings.Repeat("ab", 32) + ".scope\n",
			"1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901", strings.Repeat("ab", 32)},
		{"12:memory:/kubepods/besteffort/pod1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901/" + strings.Repeat("0f", 32) + "\n11:cpu:/\n",
			"1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901", strings.Repeat("0f", 32)},
		{"0::/system.slice/sshd.service\n", "", ""},
		{"garbage", "", ""},
	}
	for _, c := range cases {
		uid, cid := parseCgroup([]byte(c.in))
		if uid != c.uid || cid != c.cid {
			t.Errorf("%q: got %q %q", c.in, uid, cid)
		}
	}
}

package agent

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"reflect"
	"testing"

	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nltest"
	"golang.org/x/sys/unix"
)

// encodeInetDiagMsg builds an inet_diag_msg as the kernel lays it out.
func encodeInetDiagMsg(r sockRow) []byte {
	b := make([]byte, inetDiagMsgLen+8) // + an attribute-sized tail that must be ignored
	fam := uint8(unix.AF_INET6)
	if r.Local.Addr().Is4() {
		fam = unix.AF_INET
	}
	b[0], b[1] = fam, r.State
	binary.BigEndian.PutUint16(b[4:], r.Local.Port())
	binary.BigEndian.PutUint16(b[6:], r.Remote.Port())
	if fam == unix.AF_INET {
		a, c := r.Local.Addr().As4(), r.Remote.Addr().As4()
		copy(b[8:], a[:])
		copy(b[24:], c[:])
	} else {
		a, c := r.Local.Addr().As16(), r.Remote.Addr().As16()
		copy(b[8:], a[:])
		copy(b[24:], c[:])
	}
	binary.NativeEndian.PutUint32(b[56:], r.RQueue)
	binary.NativeEndian.PutUint32(b[60:], r.WQueue)
	binary.NativeEndian.PutUint32(b[68:], 12345) // inode
	return b
}

var (
	diagRow4 = sockRow{Local: netip.MustParseAddrPort("10.244.1.2:40000"), Remote: netip.MustParseAddrPort("10.244.1.3:8080"), State: tcpEstablished}
	diagRow6 = sockRow{Local: netip.MustParseAddrPort("[fd00:244::3]:9090"), Remote: netip.MustParseAddrPort("[::]:0"), State: tcpListen, RQueue: 2, WQueue: 4096}
)

func TestDecodeInetDiagMsg(t *testing.T) {
	for _, r := range []sockRow{diagRow4, diagRow6} {
		fam := uint8(unix.AF_INET6)
		if r.Local.Addr().Is4() {
			fam = unix.AF_INET
		}
		got, reason := decodeInetDiagMsg(encodeInetDiagMsg(r), fam)
		if reason != "" || got != r {
			t.Errorf("got %+v %q want %+v", got, reason, r)
		}
	}
	// IPv4-mapped rows in the AF_INET6 table are reported as IPv4.
	mapped := sockRow{Local: netip.MustParseAddrPort("[::ffff:10.0.0.1]:80"), Remote: netip.MustParseAddrPort("[::ffff:10.0.0.2]:5000"), State: tcpEstablished}
	got, _ := decodeInetDiagMsg(encodeInetDiagMsg(mapped), unix.AF_INET6)
	if got.Local.String() != "10.0.0.1:80" || got.Remote.String() != "10.0.0.2:5000" {
		t.Errorf("mapped: %+v", got)
	}
}

// fakeDump answers a SOCK_DIAG dump with the given payloads as a multipart
// reply (ending with NLMSG_DONE unless err is set, in which case the
// transport fails after the payloads).
func fakeDump(t *testing.T, payloads [][]byte, flags []netlink.HeaderFlags, err error) *netlink.Conn {
	return nltest.Dial(func(reqs []netlink.Message) ([]netlink.Message, error) {
		if len(reqs) == 0 {
			return nil, errors.New("unexpected receive")
		}
		if reqs[0].Header.Type != sockDiagByFamily || reqs[0].Header.Flags != netlink.Request|netlink.Dump || len(reqs[0].Data) != inetDiagReqV2Len {
			t.Errorf("bad request %+v", reqs[0])
		}
		var msgs []netlink.Message
		for i, p := range payloads {
			m := netlink.Message{Header: netlink.Header{Type: sockDiagByFamily, Flags: netlink.Multi}, Data: p}
			if i < len(flags) {
				m.Header.Flags |= flags[i]
			}
			msgs = append(msgs, m)
		}
		if err != nil {
			return msgs, err
		}
		return append(msgs, netlink.Message{Header: netlink.Header{Type: netlink.Done, Flags: netlink.Multi}, Data: make([]byte, 4)}), nil
	})
}

// TestDumpTCPMalformed: truncated and odd messages in a dump are counted by
// reason and the good rows around them are kept.
func TestDumpTCPMalformed(t *testing.T) {
	good := encodeInetDiagMsg(diagRow4)
	badFamily := encodeInetDiagMsg(diagRow6)
	badState := encodeInetDiagMsg(diagRow4)
	badState[1] = 0
	payloads := [][]byte{good, good[:40], good[:0], badFamily, badState, good}
	c := fakeDump(t, payloads, []netlink.HeaderFlags{0, 0, 0, netlink.DumpInterrupted, netlink.DumpInterrupted}, nil)
	defer c.Close()
	errs := errCounts{}
	var rows []sockRow
	n, err := dumpTCP(c, unix.AF_INET, errs, func(r sockRow) { rows = append(rows, r) })
	if err != nil || n != len(payloads) {
		t.Fatalf("n=%d err=%v", n, err)
	}
	want := errCounts{ErrNetlinkShortMessage: 2, ErrNetlinkBadFamily: 1, ErrNetlinkBadState: 1, ErrNetlinkDumpInterrupted: 1}
	if !reflect.DeepEqual(errs, want) {
		t.Errorf("errors %v want %v", errs, want)
	}
	if !reflect.DeepEqual(rows, []sockRow{diagRow4, diagRow4}) {
		t.Errorf("rows %+v", rows)
	}

	// A transport failure in the middle of the dump keeps the rows received
	// before it and is counted.
	c2 := fakeDump(t, [][]byte{good, good, good}, nil, unix.ENOBUFS)
	defer c2.Close()
	errs = errCounts{}
	rows = nil
	n, err = dumpTCP(c2, unix.AF_INET, errs, func(r sockRow) { rows = append(rows, r) })
	if !errors.Is(err, unix.ENOBUFS) || n != 3 || len(rows) != 3 || errs[ErrNetlinkReceive] != 1 {
		t.Errorf("n=%d err=%v rows=%d errs=%v", n, err, len(rows), errs)
	}

	// A netlink error reply (e.g. family not supported) yields no rows.
	c3 := nltest.Dial(func(reqs []netlink.Message) ([]netlink.Message, error) {
		data := make([]byte, 4+16)
		errno := -int32(unix.ENOENT)
		binary.NativeEndian.PutUint32(data, uint32(errno))
		return []netlink.Message{{Header: netlink.Header{Type: netlink.Error, Sequence: reqs[0].Header.Sequence}, Data: data}}, nil
	})
	defer c3.Close()
	errs = errCounts{}
	n, err = dumpTCP(c3, unix.AF_INET6, errs, func(sockRow) { t.Error("row from error reply") })
	if !errors.Is(err, unix.ENOENT) || n != 0 || errs[ErrNetlinkReceive] != 1 {
		t.Errorf("n=%d err=%v errs=%v", n, err, errs)
	}
}

// FuzzDiagMessage feeds arbitrary bytes through the netlink framing of
// mdlayher/netlink (Message.UnmarshalBinary) and our per-message decoding.
func FuzzDiagMessage(f *testing.F) {
	frame := func(typ netlink.HeaderType, flags netlink.HeaderFlags, data []byte) []byte {
		m := netlink.Message{Header: netlink.Header{Type: typ, Flags: flags, Length: uint32(16 + len(data))}, Data: data}
		m.Header.Length = (m.Header.Length + 3) &^ 3
		m.Data = append(data, make([]byte, int(m.Header.Length)-16-len(data))...)
		b, err := m.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	f.Add(frame(sockDiagByFamily, netlink.Multi, encodeInetDiagMsg(diagRow4)), uint8(unix.AF_INET))
	f.Add(frame(sockDiagByFamily, netlink.Multi|netlink.DumpInterrupted, encodeInetDiagMsg(diagRow6)), uint8(unix.AF_INET6))
	f.Add(frame(sockDiagByFamily, netlink.Multi, encodeInetDiagMsg(diagRow4)[:30]), uint8(unix.AF_INET))
	f.Add(frame(netlink.Done, netlink.Multi, []byte{0, 0, 0, 0}), uint8(unix.AF_INET))
	f.Add([]byte{1, 2, 3}, uint8(unix.AF_INET6))
	f.Fuzz(func(t *testing.T, b []byte, family uint8) {
		var m netlink.Message
		if err := m.UnmarshalBinary(b); err != nil {
			return // the framing layer rejects it; the library reports that as a receive error
		}
		errs := errCounts{}
		rows := 0
		handleDiagMessage(m, family, errs, func(r sockRow) {
			rows++
			if !validState(r.State) || !r.Local.IsValid() || !r.Remote.IsValid() {
				t.Fatalf("bad row %+v", r)
			}
		})
		bad := 0
		for k, n := range errs {
			if k != ErrNetlinkDumpInterrupted {
				bad += n
			}
		}
		if rows+bad != 1 {
			t.Fatalf("rows %d errors %v", rows, errs)
		}
	})
}

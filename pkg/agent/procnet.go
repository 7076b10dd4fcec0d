package agent

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"strconv"
)

// TCP states as numbered by the kernel (include/net/tcp_states.h).
const (
	tcpEstablished = 1
	tcpSynSent     = 2
	tcpSynRecv     = 3
	tcpFinWait1    = 4
	tcpFinWait2    = 5
	tcpTimeWait    = 6
	tcpClose       = 7
	tcpCloseWait   = 8
	tcpLastAck     = 9
	tcpListen      = 10
	tcpClosing     = 11
	tcpNewSynRecv  = 12
)

var stateNames = [...]string{
	tcpEstablished: "ESTABLISHED",
	tcpSynSent:     "SYN_SENT",
	tcpSynRecv:     "SYN_RECV",
	tcpFinWait1:    "FIN_WAIT1",
	tcpFinWait2:    "FIN_WAIT2",
	tcpTimeWait:    "TIME_WAIT",
	tcpClose:       "CLOSE",
	tcpCloseWait:   "CLOSE_WAIT",
	tcpLastAck:     "LAST_ACK",
	tcpListen:      "LISTEN",
	tcpClosing:     "CLOSING",
	tcpNewSynRecv:  "SYN_RECV", // request sockets; ss and /proc show SYN_RECV too
}

func validState(s uint8) bool { return s >= tcpEstablished && s <= tcpNewSynRecv }

// StateName returns the kernel name of a TCP state number ("" if unknown).
func StateName(s uint8) string {
	if !validState(s) {
		return ""
	}
	return stateNames[s]
}

// sockRow is one TCP socket as read from netlink or /proc, before direction
// and namespace context are applied.
type sockRow struct {
	Local, Remote netip.AddrPort
	State         uint8
	RQueue        uint32
	WQueue        uint32
}

// errCounts counts problems per reason; reasons are short stable strings
// such as "proc.bad_hex" that end up in Snapshot.Errors.
type errCounts map[string]int

func (e errCounts) add(reason string) { e[reason]++ }

// Error reasons of the /proc/net/tcp parser.
const (
	ErrProcShortLine  = "proc.short_line"
	ErrProcBadAddress = "proc.bad_address"
	ErrProcBadHex     = "proc.bad_hex"
	ErrProcBadState   = "proc.bad_state"
)

// parseProcNetTCP parses the contents of /proc/PID/net/tcp (v6=false) or
// tcp6 (v6=true). Each good row is passed to emit; each bad line is counted
// in errs by reason and skipped, so one bad line never drops the others.
//
// The parser is ours rather than prometheus/procfs's NetTCP because procfs
// returns an error for the whole table on the first malformed line (and reads
// only /proc/net of its own root, allocating strings per field); we need
// per-line error counts and allocation-free parsing of large tables.
func parseProcNetTCP(data []byte, v6 bool, errs errCounts, emit func(sockRow)) {
	for len(data) > 0 {
		var line []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			line, data = data, nil
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		row, reason := parseProcNetTCPLine(line, v6)
		switch reason {
		case "":
			emit(row)
		case "header":
		default:
			errs.add(reason)
		}
	}
}

// parseProcNetTCPLine parses one line. It returns reason "header" for the
// column header line and an error reason for a malformed line.
func parseProcNetTCPLine(line []byte, v6 bool) (sockRow, string) {
	var f [10][]byte
	n := 0
	i := 0
	for n < len(f) {
		for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
			i++
		}
		if i >= len(line) {
			break
		}
		j := i
		for j < len(line) && line[j] != ' ' && line[j] != '\t' {
			j++
		}
		f[n] = line[i:j]
		n++
		i = j
	}
	if n > 0 && string(f[0]) == "sl" {
		return sockRow{}, "header"
	}
	// sl, local, remote, st, tx:rx, tr:when, retrnsmt, uid, timeout, inode
	if n < 10 {
		return sockRow{}, ErrProcShortLine
	}
	if len(f[0]) < 2 || f[0][len(f[0])-1] != ':' {
		return sockRow{}, ErrProcBadAddress
	}
	if _, ok := parseHex(f[0][:len(f[0])-1]); !ok {
		return sockRow{}, ErrProcBadHex
	}
	var row sockRow
	var reason string
	if row.Local, reason = parseHexAddrPort(f[1], v6); reason != "" {
		return sockRow{}, reason
	}
	if row.Remote, reason = parseHexAddrPort(f[2], v6); reason != "" {
		return sockRow{}, reason
	}
	st, ok := parseHex(f[3])
	if !ok {
		return sockRow{}, ErrProcBadHex
	}
	if st > 0xff || !validState(uint8(st)) {
		return sockRow{}, ErrProcBadState
	}
	row.State = uint8(st)
	c := bytes.IndexByte(f[4], ':')
	if c < 0 {
		return sockRow{}, ErrProcBadAddress
	}
	tx, ok1 := parseHex(f[4][:c])
	rx, ok2 := parseHex(f[4][c+1:])
	if !ok1 || !ok2 || tx > 0xffffffff || rx > 0xffffffff {
		return sockRow{}, ErrProcBadHex
	}
	row.WQueue, row.RQueue = uint32(tx), uint32(rx)
	return row, ""
}

// parseHexAddrPort parses "0100007F:1F90" (IPv4: one native-endian 32-bit
// word) or 32 hex digits (IPv6: four native-endian words) and a hex port.
func parseHexAddrPort(b []byte, v6 bool) (netip.AddrPort, string) {
	c := bytes.IndexByte(b, ':')
	if c < 0 {
		return netip.AddrPort{}, ErrProcBadAddress
	}
	ab, pb := b[:c], b[c+1:]
	want := 8
	if v6 {
		want = 32
	}
	if len(ab) != want || len(pb) == 0 || len(pb) > 4 {
		return netip.AddrPort{}, ErrProcBadAddress
	}
	port, ok := parseHex(pb)
	if !ok {
		return netip.AddrPort{}, ErrProcBadHex
	}
	var raw [16]byte
	for w := 0; w < want/8; w++ {
		v, ok := parseHex(ab[w*8 : w*8+8])
		if !ok {
			return netip.AddrPort{}, ErrProcBadHex
		}
		binary.NativeEndian.PutUint32(raw[w*4:], uint32(v))
	}
	var addr netip.Addr
	if v6 {
		addr = netip.AddrFrom16(raw).Unmap()
	} else {
		addr = netip.AddrFrom4([4]byte(raw[:4]))
	}
	return netip.AddrPortFrom(addr, uint16(port)), ""
}

// parseHex parses up to 16 hex digits.
func parseHex(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 16 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, false
		}
		v = v<<4 | uint64(d)
	}
	return v, true
}

// ErrSNMPMalformed counts unparsable /proc/PID/net/snmp or netstat content.
const ErrSNMPMalformed = "counters.malformed"

// parseMIB parses the "Prefix: Name1 Name2\nPrefix: v1 v2" line pairs of
// /proc/net/snmp and /proc/net/netstat and calls set for every name/value of
// the wanted prefix (e.g. "Tcp:"). Mismatched line pairs are counted.
func parseMIB(data []byte, prefix string, errs errCounts, set func(name string, v int64)) {
	var header []byte
	for len(data) > 0 {
		var line []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			line, data = data, nil
		}
		if !bytes.HasPrefix(line, []byte(prefix)) {
			continue
		}
		if header == nil {
			header = line
			continue
		}
		names := bytes.Fields(header[len(prefix):])
		vals := bytes.Fields(line[len(prefix):])
		header = nil
		if len(names) != len(vals) {
			errs.add(ErrSNMPMalformed)
			continue
		}
		for k := range names {
			v, err := strconv.ParseInt(string(vals[k]), 10, 64)
			if err != nil {
				errs.add(ErrSNMPMalformed)
				continue
			}
			set(string(names[k]), v)
		}
	}
	if header != nil {
		errs.add(ErrSNMPMalformed)
	}
}

package agent

import (
	"encoding/binary"
	"net/netip"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// sock_diag constants (linux/sock_diag.h, linux/inet_diag.h).
const (
	sockDiagByFamily = 20 // SOCK_DIAG_BY_FAMILY
	inetDiagReqV2Len = 56 // struct inet_diag_req_v2
	inetDiagMsgLen   = 72 // struct inet_diag_msg
)

// Error reasons of the sock_diag reader.
const (
	ErrNetlinkDial            = "netlink.dial"
	ErrNetlinkSend            = "netlink.send"
	ErrNetlinkReceive         = "netlink.receive"
	ErrNetlinkShortMessage    = "netlink.short_message"
	ErrNetlinkBadFamily       = "netlink.bad_family"
	ErrNetlinkBadState        = "netlink.bad_state"
	ErrNetlinkUnexpectedType  = "netlink.unexpected_type"
	ErrNetlinkDumpInterrupted = "netlink.dump_interrupted"
)

// inetDiagRequest builds an inet_diag_req_v2 for a TCP dump of every state.
// No extensions are requested (no tcp_info): the agent needs only the
// fixed inet_diag_msg, which keeps replies at 72 bytes a socket.
func inetDiagRequest(family uint8) []byte {
	b := make([]byte, inetDiagReqV2Len)
	b[0] = family
	b[1] = unix.IPPROTO_TCP
	b[2] = 0                                                   // idiag_ext
	binary.NativeEndian.PutUint32(b[4:], 0xfff&^(1<<tcpClose)) // all states but CLOSE
	return b
}

// decodeInetDiagMsg decodes the fixed part of one inet_diag_msg (the
// payload of a SOCK_DIAG_BY_FAMILY reply). Attributes after the first 72
// bytes are ignored. On failure it returns an error reason.
//
// Layout: family, state, timer, retrans (u8 each); inet_diag_sockid
// {sport, dport (be16); src[4], dst[4] (be32); if; cookie[2]}; expires,
// rqueue, wqueue, uid, inode (u32, host order).
func decodeInetDiagMsg(b []byte, family uint8) (sockRow, string) {
	if len(b) < inetDiagMsgLen {
		return sockRow{}, ErrNetlinkShortMessage
	}
	if b[0] != family || (family != unix.AF_INET && family != unix.AF_INET6) {
		return sockRow{}, ErrNetlinkBadFamily
	}
	st := b[1]
	if !validState(st) {
		return sockRow{}, ErrNetlinkBadState
	}
	sport := binary.BigEndian.Uint16(b[4:6])
	dport := binary.BigEndian.Uint16(b[6:8])
	var src, dst netip.Addr
	if family == unix.AF_INET {
		src = netip.AddrFrom4([4]byte(b[8:12]))
		dst = netip.AddrFrom4([4]byte(b[24:28]))
	} else {
		src = netip.AddrFrom16([16]byte(b[8:24])).Unmap()
		dst = netip.AddrFrom16([16]byte(b[24:40])).Unmap()
	}
	return sockRow{
		Local:  netip.AddrPortFrom(src, sport),
		Remote: netip.AddrPortFrom(dst, dport),
		State:  st,
		RQueue: binary.NativeEndian.Uint32(b[56:60]),
		WQueue: binary.NativeEndian.Uint32(b[60:64]),
	}, ""
}

// handleDiagMessage checks one netlink reply message of a dump and decodes
// it. It is the whole per-message decoding path, shared by the live reader
// and the fuzz test.
func handleDiagMessage(m netlink.Message, family uint8, errs errCounts, emit func(sockRow)) {
	if m.Header.Flags&netlink.DumpInterrupted != 0 {
		errs.add(ErrNetlinkDumpInterrupted)
	}
	if m.Header.Type != sockDiagByFamily {
		errs.add(ErrNetlinkUnexpectedType)
		return
	}
	row, reason := decodeInetDiagMsg(m.Data, family)
	if reason != "" {
		errs.add(reason)
		return
	}
	emit(row)
}

// dumpTCP dumps the TCP sockets of one address family over an open
// NETLINK_SOCK_DIAG connection (already in the right namespace). Malformed
// messages are counted and skipped. It returns the number of messages
// received and the transport error that ended the dump early, if any: rows
// received before it have been emitted already.
func dumpTCP(c *netlink.Conn, family uint8, errs errCounts, emit func(sockRow)) (int, error) {
	req := netlink.Message{
		Header: netlink.Header{
			Type:  sockDiagByFamily,
			Flags: netlink.Request | netlink.Dump,
		},
		Data: inetDiagRequest(family),
	}
	if _, err := c.Send(req); err != nil {
		errs.add(ErrNetlinkSend)
		return 0, err
	}
	n := 0
	interrupted := false
	for m, err := range c.ReceiveIter() {
		if err != nil {
			errs.add(ErrNetlinkReceive)
			return n, err
		}
		n++
		if m.Header.Flags&netlink.DumpInterrupted != 0 {
			if interrupted { // count once per dump
				m.Header.Flags &^= netlink.DumpInterrupted
			}
			interrupted = true
		}
		handleDiagMessage(m, family, errs, emit)
	}
	return n, nil
}

// dialDiag opens a NETLINK_SOCK_DIAG socket inside the network namespace
// referred to by nsFD (mdlayher/netlink enters it on a locked OS thread).
// A fixed 64 KiB receive buffer avoids a MSG_PEEK recvmsg per datagram:
// the kernel fills dump datagrams up to 32 KiB.
func dialDiag(nsFD int) (*netlink.Conn, error) {
	return netlink.Dial(unix.NETLINK_SOCK_DIAG, &netlink.Config{NetNS: nsFD, MessageBufferSize: 64 << 10})
}

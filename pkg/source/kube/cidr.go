package kube

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/livemap/servicemap/pkg/config"
)

// cidrRules are the externalCidrs settings, most specific prefix first (ties
// by name). The resolver names addresses with them, and NetworkPolicy
// ipBlock peers are named by the same rules, so a declared edge to a CIDR
// meets the observed edge to the addresses in it.
type cidrRules []cidrRule

type cidrRule struct {
	name   string
	prefix netip.Prefix
}

// newCIDRRules skips entries that do not parse (config.Parse has validated
// them).
func newCIDRRules(cidrs []config.ExternalCIDR) cidrRules {
	var r cidrRules
	for _, c := range cidrs {
		if p, err := netip.ParsePrefix(c.CIDR); err == nil {
			r = append(r, cidrRule{c.Name, p.Masked()})
		}
	}
	slices.SortStableFunc(r, func(a, b cidrRule) int {
		if d := b.prefix.Bits() - a.prefix.Bits(); d != 0 {
			return d
		}
		return strings.Compare(a.name, b.name)
	})
	return r
}

// name of the most specific rule containing ip.
func (r cidrRules) name(ip netip.Addr) (string, bool) {
	ip = ip.Unmap()
	for _, c := range r {
		if c.prefix.Contains(ip) {
			return c.name, true
		}
	}
	return "", false
}

// covers reports whether outer contains every address of inner.
func covers(outer, inner netip.Prefix) bool {
	return outer.Bits() <= inner.Bits() && outer.Contains(inner.Addr())
}

// blockNames names the external nodes an ipBlock (cidr minus except) lets
// through, as Resolve would name the addresses in it:
//
//   - every rule inside the block, unless an except range swallows it whole;
//   - the most specific rule that contains the whole block (the addresses
//     of the block no inner rule claims resolve to it);
//   - with no rule at all, a /32 (/128) block is named by its address (what
//     Resolve names an unnamed address) and a wider one by its CIDR text.
//
// A block that the except ranges cover entirely names nothing. ok is false
// for a cidr that does not parse.
func (r cidrRules) blockNames(cidr string, except []string) (names []string, ok bool) {
	block, err := netip.ParsePrefix(cidr)
	if err != nil {
		return nil, false
	}
	block = block.Masked()
	var ex []netip.Prefix
	for _, e := range except {
		if p, err := netip.ParsePrefix(e); err == nil {
			ex = append(ex, p.Masked())
		}
	}
	excluded := func(p netip.Prefix) bool { return coveredByUnion(p, ex) }
	if excluded(block) {
		return nil, true
	}
	for _, c := range r {
		if covers(block, c.prefix) && !excluded(c.prefix) {
			names = append(names, c.name)
		}
	}
	for _, c := range r { // most specific first
		if covers(c.prefix, block) && c.prefix != block {
			names = append(names, c.name)
			break
		}
	}
	if len(names) == 0 {
		if block.IsSingleIP() {
			names = append(names, block.Addr().Unmap().String())
		} else {
			names = append(names, block.String())
		}
	}
	slices.Sort(names)
	return slices.Compact(names), true
}

// coveredByUnion reports whether the prefixes in ex together cover every
// address of p (e.g. 0.0.0.0/1 and 128.0.0.0/1 cover 0.0.0.0/0). It halves p
// only while some prefix of ex lies strictly inside it, so the depth is at
// most the longest except prefix.
func coveredByUnion(p netip.Prefix, ex []netip.Prefix) bool {
	inside := false
	for _, e := range ex {
		if covers(e, p) {
			return true
		}
		if covers(p, e) {
			inside = true
		}
	}
	if !inside || p.Bits() >= p.Addr().BitLen() {
		return false
	}
	lo := netip.PrefixFrom(p.Addr(), p.Bits()+1)
	b := p.Addr().AsSlice()
	b[p.Bits()/8] |= 0x80 >> (p.Bits() % 8)
	hiAddr, _ := netip.AddrFromSlice(b)
	hi := netip.PrefixFrom(hiAddr, p.Bits()+1)
	return coveredByUnion(lo, ex) && coveredByUnion(hi, ex)
}

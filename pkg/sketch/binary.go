package sketch

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// binaryVersion is the first byte of MarshalBinary's encoding.
const binaryVersion = 1

// MarshalBinary encodes the histogram for the wire (the node agent sends
// gateway latencies this way): version byte, zig-zag varint offset of the
// first bin, uvarint count, width byte, then the packed counts. The
// histogram itself is left as it was.
func (l *Latency) MarshalBinary() ([]byte, error) {
	c := l.Clone()
	c.Pack()
	out := make([]byte, 0, 1+3*binary.MaxVarintLen64+len(c.packed))
	out = append(out, binaryVersion)
	out = binary.AppendVarint(out, int64(c.offset))
	out = binary.AppendUvarint(out, c.n)
	out = append(out, c.width)
	return append(out, c.packed...), nil
}

// UnmarshalBinary replaces the histogram with an encoding made by
// MarshalBinary. Malformed input is refused with a specific error and leaves
// the histogram unchanged.
func (l *Latency) UnmarshalBinary(b []byte) error {
	if len(b) == 0 {
		return errors.New("latency sketch: empty encoding")
	}
	if b[0] != binaryVersion {
		return fmt.Errorf("latency sketch: unknown encoding version %d", b[0])
	}
	rest := b[1:]
	offset, k := binary.Varint(rest)
	if k <= 0 {
		return errors.New("latency sketch: bad offset varint")
	}
	rest = rest[k:]
	n, k := binary.Uvarint(rest)
	if k <= 0 {
		return errors.New("latency sketch: bad count varint")
	}
	rest = rest[k:]
	if len(rest) == 0 {
		return errors.New("latency sketch: missing width byte")
	}
	width, packed := rest[0], rest[1:]
	lo, hi := int64(Index(MinMs)), int64(Index(MaxMs))
	switch {
	case n == 0 && (width != 0 || len(packed) != 0):
		return errors.New("latency sketch: empty histogram with bins")
	case n == 0:
		*l = Latency{}
		return nil
	case width != 1 && width != 2 && width != 4 && width != 8:
		return fmt.Errorf("latency sketch: bin width %d (want 1, 2, 4 or 8)", width)
	case len(packed) == 0 || len(packed)%int(width) != 0:
		return fmt.Errorf("latency sketch: %d bytes of bins do not divide into %d-byte bins", len(packed), width)
	case offset < lo || offset+int64(len(packed)/int(width))-1 > hi:
		return fmt.Errorf("latency sketch: bins [%d, %d] outside the mapping's range [%d, %d]",
			offset, offset+int64(len(packed)/int(width))-1, lo, hi)
	}
	dec := Latency{offset: int32(offset), packed: append([]byte(nil), packed...), width: width, n: n}
	var sum uint64
	for i := range dec.bins() {
		c := dec.at(i)
		if sum+c < sum {
			return errors.New("latency sketch: bin counts overflow")
		}
		sum += c
	}
	if sum != n {
		return fmt.Errorf("latency sketch: bins hold %d latencies, header says %d", sum, n)
	}
	*l = dec
	return nil
}

package sketch

import (
	"strings"
	"testing"
)

func TestBinaryRoundTrip(t *testing.T) {
	var l Latency
	for i := range 5000 {
		l.Add(float64(i%700) + 0.5)
	}
	l.AddN(3.2, 70000) // forces 4-byte bins
	b, err := l.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var got Latency
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if got.Count() != l.Count() {
		t.Fatalf("count %d, want %d", got.Count(), l.Count())
	}
	for _, q := range []float64{0, 0.5, 0.9, 0.99, 1} {
		if got.Quantile(q) != l.Quantile(q) {
			t.Errorf("q%.2f = %v, want %v", q, got.Quantile(q), l.Quantile(q))
		}
	}
	if l.counts == nil {
		t.Error("MarshalBinary packed the original")
	}
	var empty, back Latency
	eb, _ := empty.MarshalBinary()
	back.Add(1)
	if err := back.UnmarshalBinary(eb); err != nil || back.Count() != 0 {
		t.Fatalf("empty round trip: count %d, err %v", back.Count(), err)
	}
}

func TestUnmarshalBinaryRefusesBadInput(t *testing.T) {
	var l Latency
	l.Add(10)
	l.Add(20)
	good, _ := l.MarshalBinary()
	cases := map[string]struct {
		in   []byte
		want string
	}{
		"empty":        {nil, "empty encoding"},
		"version":      {append([]byte{9}, good[1:]...), "unknown encoding version 9"},
		"count":        {append(append([]byte{}, good[:len(good)-1]...), good[len(good)-1]+1), "header says 2"},
		"width":        {replaceWidth(good, 3), "bin width 3"},
		"no width":     {[]byte{1, 0, 1}, "missing width byte"},
		"bins outside": {[]byte{1, 0xfe, 0xff, 0xff, 0x0f, 1, 1, 1}, "outside the mapping's range"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			dst := l.Clone()
			err := dst.UnmarshalBinary(c.in)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err %v, want it to mention %q", err, c.want)
			}
			if dst.Count() != 2 {
				t.Fatalf("failed decode changed the histogram: count %d", dst.Count())
			}
		})
	}
}

// replaceWidth rewrites the width byte of an encoding (it follows the two varints).
func replaceWidth(b []byte, w byte) []byte {
	out := append([]byte{}, b...)
	i := 1
	for out[i]&0x80 != 0 {
		i++
	}
	i++
	for out[i]&0x80 != 0 {
		i++
	}
	out[i+1] = w
	return out
}

func FuzzUnmarshalBinary(f *testing.F) {
	var l Latency
	l.Add(1)
	l.AddN(250, 300)
	good, _ := l.MarshalBinary()
	f.Add(good)
	f.Add([]byte{1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var got Latency
		if err := got.UnmarshalBinary(b); err != nil {
			return
		}
		again, _ := got.MarshalBinary()
		var twice Latency
		if err := twice.UnmarshalBinary(again); err != nil || twice.Count() != got.Count() {
			t.Fatalf("re-encoding of an accepted input fails: %v", err)
		}
		_ = got.Quantile(0.99)
	})
}

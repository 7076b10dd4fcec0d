package agent

import (
	"bytes"
	"cmp"
	"compress/flate"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/livemap/servicemap/pkg/agent/api"
)

// DefaultMaxResponseBytes bounds GET /v1/snapshot responses (16 MiB).
const DefaultMaxResponseBytes = 16 << 20

// SnapshotSource is what the server serves; *Agent implements it.
type SnapshotSource interface {
	Last() *api.Snapshot
	// Births returns the held per-poll births in (after, through] that
	// have any (with the connections closed there that were first seen
	// after sampled), oldest first, and the oldest poll held.
	Births(after, through, sampled uint64) ([]api.PollBirths, uint64)
}

// Server serves GET /v1/snapshot (bearer token) and GET /healthz.
type Server struct {
	src       SnapshotSource
	tokenHash [32]byte
	maxBytes  int
	// StaleAfter makes /healthz fail if the last snapshot is older (0: never).
	StaleAfter time.Duration
	// MaxBirthsBytes bounds the births of one answer on their own (0: the
	// same bound as the snapshot); beyond it the answer says More.
	MaxBirthsBytes int
	now            func() time.Time

	gateway *Gateway // nil: no GET /v1/gateway (see ServeGateway)

	mu sync.Mutex
	// The last snapshot's encodings: [0] with its rows, [1] without (for
	// answers whose births say More: the client takes the rows only from
	// the answer that reaches the snapshot).
	enc [2]encoding
}

// encoding is one snapshot's JSON, made at most once.
type encoding struct {
	snap    *api.Snapshot // snapshot the encodings below belong to
	encoded []byte        // the bounded JSON without its closing "}\n"
	gzipped *gzipHead     // encoded, compressed (made on the first request that accepts gzip)
	err     error
}

// NewServer returns a server for src. token must not be empty; maxBytes
// <= 0 means DefaultMaxResponseBytes. src nil (a gateway-only agent, no
// TCP polling) serves no /v1/snapshot and a /healthz that is always ok.
func NewServer(src SnapshotSource, token string, maxBytes int) (*Server, error) {
	if token == "" {
		return nil, errors.New("agent: empty bearer token")
	}
	if maxBytes <= 0 {
		maxBytes = DefaultMaxResponseBytes
	}
	return &Server{src: src, tokenHash: sha256.Sum256([]byte(token)), maxBytes: maxBytes, now: time.Now}, nil
}

// Handler returns the HTTP handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	if s.src != nil {
		mux.HandleFunc("GET /v1/snapshot", s.withToken(s.snapshot))
	}
	if s.gateway != nil {
		mux.HandleFunc("GET /v1/gateway", s.withToken(s.gatewayReport))
	}
	mux.HandleFunc("GET /healthz", s.healthz)
	return mux
}

// withToken answers 401 unless the request carries the bearer token.
func (s *Server) withToken(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.authorized(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="servicemap-agent"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h(w, r)
	}
}

// authorized compares the bearer token in constant time (both sides are
// hashed first so the comparison does not leak the token length either).
func (s *Server) authorized(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	const prefix = "Bearer "
	if len(h) < len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return false
	}
	got := sha256.Sum256([]byte(h[len(prefix):]))
	return subtle.ConstantTimeCompare(got[:], s.tokenHash[:]) == 1
}

func (s *Server) snapshot(w http.ResponseWriter, r *http.Request) {
	snap := s.src.Last()
	if snap == nil {
		http.Error(w, "no snapshot yet", http.StatusServiceUnavailable)
		return
	}
	births, err := s.births(snap, r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	gz := acceptsGzip(r)
	plain, zhead, err := s.encode(snap, births.More, gz)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	// The cached snapshot JSON lacks its closing brace; the births of this
	// request complete it. Compressed, the cached deflate blocks of the
	// snapshot are continued by the births' blocks in one gzip stream.
	tail, err := marshal(births)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	tail = append(append([]byte(`,"births":`), bytes.TrimSuffix(tail, []byte("\n"))...), "}\n"...)
	head := plain
	if gz {
		head, tail = zhead.data, zhead.finish(tail)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Vary", "Accept-Encoding")
	if gz {
		w.Header().Set("Content-Encoding", "gzip")
	}
	w.Header().Set("Content-Length", fmt.Sprint(len(head)+len(tail)))
	w.Write(head)
	w.Write(tail)
}

// births answers the after/epoch query parameters for snap (see package
// api): bad input is a 400 with the reason.
func (s *Server) births(snap *api.Snapshot, r *http.Request) (*api.Births, error) {
	q := r.URL.Query()
	afterS, epoch, sampledS := q.Get("after"), q.Get("epoch"), q.Get("sampled")
	b := &api.Births{Through: snap.Seq}
	switch {
	case afterS == "" && epoch == "" && sampledS == "":
		b.After = snap.Seq - 1 // the last poll only
		b.Sampled = b.After
	case afterS == "0" && epoch == "" && sampledS == "":
		// Every held poll of whatever run this is: a client's first contact.
		b.After, b.Sampled = 0, 0
	case afterS == "" || epoch == "":
		return nil, errors.New("after and epoch go together (sampled needs both; only after=0 stands alone)")
	default:
		after, err := strconv.ParseUint(afterS, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("after: want a poll sequence number, got %q", afterS)
		}
		sampled := after
		if sampledS != "" {
			if sampled, err = strconv.ParseUint(sampledS, 10, 64); err != nil {
				return nil, fmt.Errorf("sampled: want a poll sequence number, got %q", sampledS)
			}
		}
		if epoch == snap.Epoch {
			if after > snap.Seq || sampled > snap.Seq {
				return nil, fmt.Errorf("after %d / sampled %d is beyond the last poll %d of epoch %s", after, sampled, snap.Seq, epoch)
			}
			b.After, b.Sampled = after, sampled
		} // else: another run of the agent; count from its first poll
	}
	polls, oldest := s.src.Births(b.After, b.Through, b.Sampled)
	b.Oldest = oldest
	if oldest > b.After+1 {
		b.Gap = oldest - b.After - 1
	}
	// Bound the births like the snapshot: whole polls, oldest first, at
	// least one so a client always makes progress.
	bound := s.maxBytes
	if s.MaxBirthsBytes > 0 {
		bound = s.MaxBirthsBytes
	}
	size := 0
	b.Polls = polls
	for i, p := range polls {
		enc, err := marshal(p)
		if err != nil {
			return nil, err
		}
		size += len(enc)
		if size > bound && i > 0 {
			b.Polls, b.Through, b.More = polls[:i], polls[i-1].Seq, true
			break
		}
	}
	if b.Polls == nil {
		b.Polls = []api.PollBirths{}
	}
	return b, nil
}

func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		name, q, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(name), "gzip") && strings.ReplaceAll(q, " ", "") != "q=0" {
			return true
		}
	}
	return false
}

// encode returns the JSON of snap within maxBytes (the bound applies to the
// uncompressed JSON) without its closing "}\n", and with gz its compressed
// beginning, encoding and compressing each snapshot at most once. bare
// leaves out the namespaces (the rows).
func (s *Server) encode(snap *api.Snapshot, bare, gz bool) ([]byte, *gzipHead, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := &s.enc[0]
	if bare {
		e = &s.enc[1]
	}
	if e.snap != snap {
		src := snap
		if bare {
			cp := *snap
			cp.Namespaces = []api.Namespace{}
			src = &cp
		}
		*e = encoding{snap: snap}
		e.encoded, e.err = EncodeBounded(src, s.maxBytes)
		if e.err == nil {
			e.encoded = bytes.TrimSuffix(bytes.TrimSuffix(e.encoded, []byte("\n")), []byte("}"))
		}
	}
	if e.err != nil || !gz {
		return e.encoded, nil, e.err
	}
	if e.gzipped == nil {
		e.gzipped = newGzipHead(e.encoded)
	}
	return e.encoded, e.gzipped, nil
}

// gzipHead is the beginning of a gzip stream (RFC 1952): the header and
// the deflate blocks of data up to a sync flush, so any request can finish
// it with its own final blocks (a fresh compressor's blocks refer to
// nothing before them, which deflate allows) and the trailer's CRC-32 and
// size of the whole. One gzip member, which every client decodes (curl
// does not read concatenated members).
type gzipHead struct {
	data []byte
	crc  uint32
	size uint32
}

func newGzipHead(b []byte) *gzipHead {
	buf := bytes.NewBuffer([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff}) // deflate, no flags, no mtime, OS unknown
	fw, _ := flate.NewWriter(buf, flate.BestSpeed)
	fw.Write(b)
	fw.Flush() // byte-aligned, not final
	return &gzipHead{data: buf.Bytes(), crc: crc32.ChecksumIEEE(b), size: uint32(len(b))}
}

// finish compresses tail as the stream's last blocks and adds the trailer.
func (h *gzipHead) finish(tail []byte) []byte {
	var buf bytes.Buffer
	fw, _ := flate.NewWriter(&buf, flate.BestSpeed)
	fw.Write(tail)
	fw.Close()
	buf.Write(binary.LittleEndian.AppendUint32(nil, crc32.Update(h.crc, crc32.IEEETable, tail)))
	buf.Write(binary.LittleEndian.AppendUint32(nil, h.size+uint32(len(tail))))
	return buf.Bytes()
}

// gzipBytes compresses a whole body as one gzip member.
func gzipBytes(b []byte) []byte {
	h := newGzipHead(b)
	return append(h.data, h.finish(nil)...)
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	if s.src == nil {
		fmt.Fprintln(w, `{"status":"ok","tcp":false}`)
		return
	}
	snap := s.src.Last()
	if snap == nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, `{"status":"starting"}`)
		return
	}
	age := s.now().Sub(snap.TakenAt)
	if s.StaleAfter > 0 && age > s.StaleAfter {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, `{"status":"stale","seq":%d,"ageSeconds":%.3f}`+"\n", snap.Seq, age.Seconds())
		return
	}
	fmt.Fprintf(w, `{"status":"ok","seq":%d,"ageSeconds":%.3f}`+"\n", snap.Seq, age.Seconds())
}

// ErrTooLarge is returned when even a snapshot without connections exceeds
// the size limit.
var ErrTooLarge = errors.New("agent: snapshot exceeds the response size limit even without connections")

// stateRank orders connections for truncation: kept first are the ones that
// show live traffic, dropped first are TIME_WAIT rows (which are also
// summarised in Namespace.Closed).
func stateRank(s string) int {
	switch s {
	case "ESTABLISHED":
		return 0
	case "SYN_SENT", "SYN_RECV":
		return 1
	case "TIME_WAIT":
		return 3
	}
	return 2
}

// EncodeBounded marshals snap as JSON of at most maxBytes bytes. If the full
// snapshot is larger, it keeps the largest prefix of connections in a fixed
// order (state rank: ESTABLISHED, SYN_*, closing states, TIME_WAIT; then
// namespace inode; then the namespace's own order) that fits, and sets
// Truncated and Truncation. snap itself is not modified.
func EncodeBounded(snap *api.Snapshot, maxBytes int) ([]byte, error) {
	full, err := marshal(snap)
	if err != nil {
		return nil, err
	}
	if len(full) <= maxBytes {
		return full, nil
	}
	type ref struct{ ns, c, rank int }
	var refs []ref
	for i := range snap.Namespaces {
		for j, c := range snap.Namespaces[i].Connections {
			refs = append(refs, ref{i, j, stateRank(c.State)})
		}
	}
	// Namespaces are sorted by inode and connections within one are
	// sorted, so (rank, ns index, conn index) is a deterministic order.
	slices.SortStableFunc(refs, func(a, b ref) int {
		return cmp.Or(cmp.Compare(a.rank, b.rank), cmp.Compare(a.ns, b.ns), cmp.Compare(a.c, b.c))
	})
	build := func(k int) ([]byte, error) {
		keep := make([][]bool, len(snap.Namespaces))
		for i := range snap.Namespaces {
			keep[i] = make([]bool, len(snap.Namespaces[i].Connections))
		}
		for _, r := range refs[:k] {
			keep[r.ns][r.c] = true
		}
		t := *snap
		t.Namespaces = make([]api.Namespace, len(snap.Namespaces))
		for i, ns := range snap.Namespaces {
			conns := make([]api.Conn, 0, k)
			for j, c := range ns.Connections {
				if keep[i][j] {
					conns = append(conns, c)
				}
			}
			ns.Connections = conns
			t.Namespaces[i] = ns
		}
		t.Truncated = true
		t.Truncation = &api.Truncation{
			MaxBytes:           maxBytes,
			TotalConnections:   len(refs),
			KeptConnections:    k,
			DroppedConnections: len(refs) - k,
		}
		return marshal(&t)
	}
	// Largest k whose encoding fits (encoding size grows with k).
	lo, hi := 0, len(refs) // invariant: build(lo) fits unless lo == 0
	best, err := build(0)
	if err != nil {
		return nil, err
	}
	if len(best) > maxBytes {
		return nil, ErrTooLarge
	}
	for lo < hi {
		mid := lo + (hi-lo+1)/2
		b, err := build(mid)
		if err != nil {
			return nil, err
		}
		if len(b) <= maxBytes {
			lo, best = mid, b
		} else {
			hi = mid - 1
		}
	}
	return best, nil
}

func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

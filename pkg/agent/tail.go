package agent

import (
	"bytes"
	"errors"
	"io"
	"os"
	"sync"
	"time"

	"github.com/livemap/servicemap/pkg/agent/api"
)

// ReasonTooLong is the bad-line reason for a line longer than the tailer's
// bound (the line is skipped up to its newline).
const ReasonTooLong = "too_long"

// tailConfig configures how one access log is followed.
type tailConfig struct {
	// FromStart reads a file that exists when the agent starts from its
	// beginning (default: from its end, so a restart does not re-count).
	FromStart bool
	// MaxLine bounds a line in bytes.
	MaxLine int
	// RotateWait is how long a rotated-away file is still read: the
	// gateway may write to it until it reopens its log (nginx workers
	// reopen on SIGUSR1, each at its own pace).
	RotateWait time.Duration
}

// lineFunc receives each complete line (without the newline; the slice is
// only valid during the call). reason is "" for a line to parse, else the
// tailer's own reason to count it bad (ReasonTooLong).
type lineFunc func(line []byte, reason string)

// tailer follows one path across rotation (rename, then a new file at the
// path) and truncation (copytruncate). It is poll-based: poll reads what
// was appended since the last call. Not safe for concurrent polls; State
// may be called concurrently.
type tailer struct {
	path   string
	cfg    tailConfig
	cur    *tailFile
	old    []*tailFile // rotated away, still drained until their deadline
	polled bool        // the first open attempt happened
	buf    []byte

	mu    sync.Mutex
	state api.TailedFile
}

type tailFile struct {
	f        *os.File
	off      int64
	frag     []byte // start of a line whose newline has not arrived yet
	skipping bool   // inside a too-long line: drop bytes up to the next newline
	deadline time.Time
}

func newTailer(path string, cfg tailConfig) *tailer {
	if cfg.MaxLine <= 0 {
		cfg.MaxLine = 64 << 10
	}
	return &tailer{path: path, cfg: cfg, buf: make([]byte, 64<<10), state: api.TailedFile{Path: path}}
}

// State is the file's current state for the report.
func (t *tailer) State() api.TailedFile {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.state
}

func (t *tailer) setErr(err error) {
	t.mu.Lock()
	if err == nil {
		t.state.Error = ""
	} else {
		t.state.Error = err.Error()
	}
	t.mu.Unlock()
}

func (t *tailer) update(f func(s *api.TailedFile)) {
	t.mu.Lock()
	f(&t.state)
	t.mu.Unlock()
}

// poll reads everything appended since the last poll and hands each line
// to emit.
func (t *tailer) poll(now time.Time, emit lineFunc) {
	first := !t.polled
	t.polled = true
	// Rotated-away files first: their lines are older.
	keep := t.old[:0]
	for _, o := range t.old {
		t.read(o, emit)
		if now.Before(o.deadline) {
			keep = append(keep, o)
			continue
		}
		t.finish(o, emit)
	}
	t.old = keep

	if t.cur == nil {
		f, err := os.Open(t.path)
		if err != nil {
			t.setErr(err)
			return
		}
		tf := &tailFile{f: f}
		// Only a file present at the very first attempt is a backlog to
		// skip; one that appears later is new and is read from its start.
		if first && !t.cfg.FromStart {
			if tf.off, err = f.Seek(0, io.SeekEnd); err != nil {
				f.Close()
				t.setErr(err)
				return
			}
		}
		t.cur = tf
		t.setErr(nil)
	}
	cur := t.cur
	if fi, err := cur.f.Stat(); err == nil && fi.Size() < cur.off {
		// copytruncate: the file was cut under us; start again at 0.
		// (Lines written between our last read and the cut are lost, and a
		// cut followed by more than our offset of new data before this
		// poll is not noticed: prefer rename rotation.)
		cur.off, cur.frag, cur.skipping = 0, cur.frag[:0], false
		if _, err := cur.f.Seek(0, io.SeekStart); err != nil {
			t.setErr(err)
		}
		t.update(func(s *api.TailedFile) { s.Rotations++ })
	}
	t.read(cur, emit)

	// Rename rotation: the path now names another file (or none yet).
	pfi, err := os.Stat(t.path)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			t.setErr(err)
		}
		return // keep reading the renamed file until a new one appears
	}
	cfi, err := cur.f.Stat()
	if err != nil || os.SameFile(pfi, cfi) {
		return
	}
	cur.deadline = now.Add(t.cfg.RotateWait)
	t.old = append(t.old, cur)
	t.cur = nil
	t.update(func(s *api.TailedFile) { s.Rotations++ })
	if f, err := os.Open(t.path); err == nil {
		t.cur = &tailFile{f: f}
		t.read(t.cur, emit)
	}
}

// finish closes a rotated-away file; a last line without a newline is
// still handed over (a gateway that writes whole lines never leaves one).
func (t *tailer) finish(o *tailFile, emit lineFunc) {
	if len(o.frag) > 0 && !o.skipping {
		emit(o.frag, "")
	}
	o.f.Close()
}

// read reads tf to its current end.
func (t *tailer) read(tf *tailFile, emit lineFunc) {
	for {
		n, err := tf.f.Read(t.buf)
		if n > 0 {
			tf.off += int64(n)
			t.split(tf, t.buf[:n], emit)
		}
		if err != nil || n == 0 {
			if err != nil && err != io.EOF {
				t.setErr(err)
			}
			break
		}
	}
	if tf == t.cur {
		t.update(func(s *api.TailedFile) { s.Offset = tf.off })
	}
}

// split cuts chunk into lines, joining with the fragment of the previous
// read and bounding lines to MaxLine.
func (t *tailer) split(tf *tailFile, chunk []byte, emit lineFunc) {
	for len(chunk) > 0 {
		i := bytes.IndexByte(chunk, '\n')
		if i < 0 {
			if !tf.skipping {
				// +1: room for the CR of a CRLF line of exactly MaxLine.
				if len(tf.frag)+len(chunk) > t.cfg.MaxLine+1 {
					emit(tf.frag, ReasonTooLong)
					tf.frag, tf.skipping = tf.frag[:0], true
				} else {
					tf.frag = append(tf.frag, chunk...)
				}
			}
			return
		}
		part := chunk[:i]
		chunk = chunk[i+1:]
		if tf.skipping {
			tf.skipping = false
			continue
		}
		line := part
		if len(tf.frag) > 0 {
			tf.frag = append(tf.frag, part...)
			line = tf.frag
		}
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if len(line) > t.cfg.MaxLine {
			emit(line, ReasonTooLong)
		} else if len(line) > 0 {
			emit(line, "")
		}
		tf.frag = tf.frag[:0]
	}
}

// close releases the open files.
func (t *tailer) close() {
	for _, o := range t.old {
		o.f.Close()
	}
	t.old = nil
	if t.cur != nil {
		t.cur.f.Close()
		t.cur = nil
	}
}

package agent

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

type tailRec struct {
	lines []string
	bad   []string // reasons
}

func (r *tailRec) emit(line []byte, reason string) {
	if reason != "" {
		r.bad = append(r.bad, reason)
		return
	}
	r.lines = append(r.lines, string(line))
}

func appendFile(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

func (r *tailRec) take() []string { l := r.lines; r.lines = nil; return l }

func TestTailerStartsAtEndAndJoinsPartialLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	appendFile(t, path, "old1\nold2\n")
	tl := newTailer(path, tailConfig{})
	defer tl.close()
	var r tailRec
	now := time.Now()
	tl.poll(now, r.emit)
	if got := r.take(); len(got) != 0 {
		t.Fatalf("backlog read: %q", got)
	}
	appendFile(t, path, "a1\nb-start")
	tl.poll(now, r.emit)
	appendFile(t, path, "-end\r\n")
	tl.poll(now, r.emit)
	if got := r.take(); !slices.Equal(got, []string{"a1", "b-start-end"}) {
		t.Fatalf("got %q", got)
	}
	if st := tl.State(); st.Offset != int64(len("old1\nold2\na1\nb-start-end\r\n")) || st.Error != "" {
		t.Fatalf("state %+v", st)
	}
}

func TestTailerMissingFileThenCreatedIsReadFromStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	tl := newTailer(path, tailConfig{})
	defer tl.close()
	var r tailRec
	tl.poll(time.Now(), r.emit)
	if st := tl.State(); !strings.Contains(st.Error, "no such file") {
		t.Fatalf("want a missing-file error, got %+v", st)
	}
	appendFile(t, path, "first\n")
	tl.poll(time.Now(), r.emit)
	if got := r.take(); !slices.Equal(got, []string{"first"}) || tl.State().Error != "" {
		t.Fatalf("got %q, state %+v", got, tl.State())
	}
}

func TestTailerRenameRotationFinishesOldFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	appendFile(t, path, "")
	tl := newTailer(path, tailConfig{RotateWait: time.Hour})
	defer tl.close()
	var r tailRec
	now := time.Now()
	tl.poll(now, r.emit)
	appendFile(t, path, "l1\n")
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	// Between rename and reopen the writer still appends to the old file.
	appendFile(t, path+".1", "l2\n")
	tl.poll(now, r.emit)
	appendFile(t, path, "n1\n")      // the writer reopened: new file at the path
	appendFile(t, path+".1", "l3\n") // a slow worker still writes to the old one
	tl.poll(now, r.emit)
	appendFile(t, path, "n2\n")
	tl.poll(now.Add(2*time.Hour), r.emit) // past RotateWait: old file closed
	appendFile(t, path+".1", "lost\n")
	tl.poll(now.Add(3*time.Hour), r.emit)
	got := r.take()
	slices.Sort(got)
	if !slices.Equal(got, []string{"l1", "l2", "l3", "n1", "n2"}) {
		t.Fatalf("got %q", got)
	}
	if st := tl.State(); st.Rotations != 1 || st.Offset != 6 {
		t.Fatalf("state %+v", st)
	}
}

func TestTailerCopyTruncate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	appendFile(t, path, "")
	tl := newTailer(path, tailConfig{})
	defer tl.close()
	var r tailRec
	tl.poll(time.Now(), r.emit)
	appendFile(t, path, "before-1\nbefore-2\n")
	tl.poll(time.Now(), r.emit)
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path, "after\n")
	tl.poll(time.Now(), r.emit)
	if got := r.take(); !slices.Equal(got, []string{"before-1", "before-2", "after"}) {
		t.Fatalf("got %q", got)
	}
	if st := tl.State(); st.Rotations != 1 || st.Offset != 6 {
		t.Fatalf("state %+v", st)
	}
}

func TestTailerTooLongLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	appendFile(t, path, "")
	tl := newTailer(path, tailConfig{MaxLine: 10})
	defer tl.close()
	var r tailRec
	tl.poll(time.Now(), r.emit)
	// One too-long line arriving in pieces, one too long in one read, and
	// good lines around them.
	appendFile(t, path, "ok1\n0123456")
	tl.poll(time.Now(), r.emit)
	appendFile(t, path, "789abcdef")
	tl.poll(time.Now(), r.emit)
	appendFile(t, path, "ghij\nok2\n"+strings.Repeat("x", 30)+"\nok3\n")
	tl.poll(time.Now(), r.emit)
	if got := r.take(); !slices.Equal(got, []string{"ok1", "ok2", "ok3"}) || !slices.Equal(r.bad, []string{ReasonTooLong, ReasonTooLong}) {
		t.Fatalf("lines %q bad %q", got, r.bad)
	}
}

// FuzzTailerSplit: however the bytes arrive in reads, the tailer emits
// exactly the file's non-empty lines (CR stripped) of at most MaxLine
// bytes, and one too_long per longer line that has its newline.
func FuzzTailerSplit(f *testing.F) {
	f.Add([]byte("a\nbb\n\nccc"), []byte{1, 2, 3})
	f.Add([]byte(strings.Repeat("x", 40)+"\nok\r\n"), []byte{7, 0, 30})
	f.Add([]byte(strings.Repeat("x", 16)+"\r\n"), []byte{15, 0})
	f.Fuzz(func(t *testing.T, data, cuts []byte) {
		const maxLine = 16
		tl := newTailer("unused", tailConfig{MaxLine: maxLine})
		tf := &tailFile{}
		var r tailRec
		rest := data
		for i := 0; len(rest) > 0; i++ {
			n := len(rest)
			if len(cuts) > 0 {
				n = min(n, int(cuts[i%len(cuts)])+1)
			}
			tl.split(tf, rest[:n], r.emit)
			rest = rest[n:]
		}
		var want []string
		tooLong := 0
		parts := strings.Split(string(data), "\n")
		for _, l := range parts[:len(parts)-1] { // the last part has no newline yet
			switch l = strings.TrimSuffix(l, "\r"); {
			case len(l) > maxLine:
				tooLong++
			case l != "":
				want = append(want, l)
			}
		}
		if !slices.Equal(r.lines, want) {
			t.Fatalf("lines %q, want %q", r.lines, want)
		}
		// A trailing line already over the bound (plus a CR) is reported
		// before its newline.
		if last := parts[len(parts)-1]; len(last) > maxLine+1 {
			tooLong++
		}
		if len(r.bad) != tooLong {
			t.Fatalf("too_long %d, want %d (data %q)", len(r.bad), tooLong, data)
		}
	})
}

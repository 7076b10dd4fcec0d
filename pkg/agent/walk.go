package agent

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// Error reasons of the /proc walk.
const (
	ErrProcList      = "walk.list_proc"
	ErrNSStatDenied  = "walk.ns_stat_denied"
	ErrNSStat        = "walk.ns_stat"
	ErrNSOpen        = "ns.open"
	ErrNSChanged     = "ns.pid_reused"
	ErrAddrList      = "ns.addr_list"
	ErrProcRead      = "proc.read"
	ErrCountersRead  = "counters.read"
	ErrNetlinkFailed = "netlink.failed_fell_back_to_proc"
)

// nsEntry is one network namespace found by the walk.
type nsEntry struct {
	inode uint64
	pids  []int // all PIDs, ascending
}

// walkNamespaces lists the numeric entries of procRoot and stats each
// PID's ns/net, grouping PIDs by namespace inode. A PID that vanished during
// the walk is skipped silently; other failures are counted.
func walkNamespaces(procRoot string, errs errCounts) (map[uint64]*nsEntry, int) {
	d, err := os.Open(procRoot)
	if err != nil {
		errs.add(ErrProcList)
		return nil, 0
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		errs.add(ErrProcList)
	}
	out := make(map[uint64]*nsEntry)
	scanned := 0
	var st syscall.Stat_t
	for _, name := range names {
		pid, err := strconv.Atoi(name)
		if err != nil || pid <= 0 {
			continue
		}
		scanned++
		if err := syscall.Stat(procRoot+"/"+name+"/ns/net", &st); err != nil {
			switch {
			case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ESRCH):
				// process exited during the walk
			case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
				errs.add(ErrNSStatDenied)
			default:
				errs.add(ErrNSStat)
			}
			continue
		}
		e := out[st.Ino]
		if e == nil {
			e = &nsEntry{inode: st.Ino}
			out[st.Ino] = e
		}
		e.pids = append(e.pids, pid)
	}
	for _, e := range out {
		sort.Ints(e.pids)
	}
	return out, scanned
}

var (
	// kubepods-burstable-pod1b2c..._..slice (systemd driver) or
	// /kubepods/burstable/pod1b2c-...(cgroupfs driver).
	podUIDRe = regexp.MustCompile(`pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})`)
	// cri-containerd-<64 hex>.scope, docker-<id>.scope, crio-<id>.scope or a
	// bare 64-hex path element.
	containerIDRe = regexp.MustCompile(`(?:^|[/-])([0-9a-f]{64})(?:\.scope)?$`)
)

// parseCgroup extracts the pod UID and container id from the contents of
// /proc/PID/cgroup, best effort ("" when absent).
func parseCgroup(data []byte) (podUID, containerID string) {
	for _, line := range bytes.Split(data, []byte{'\n'}) {
		// hierarchy-ID:controllers:path
		parts := bytes.SplitN(line, []byte{':'}, 3)
		if len(parts) != 3 {
			continue
		}
		path := string(parts[2])
		if podUID == "" {
			if m := podUIDRe.FindStringSubmatch(path); m != nil {
				podUID = strings.ReplaceAll(m[1], "_", "-")
			}
		}
		if containerID == "" {
			last := filepath.Base(path)
			if m := containerIDRe.FindStringSubmatch(last); m != nil {
				containerID = m[1]
			}
		}
		if podUID != "" && containerID != "" {
			break
		}
	}
	return podUID, containerID
}

// readFileInto reads a whole (/proc) file into buf, reusing its storage.
func readFileInto(path string, buf []byte) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return buf[:0], err
	}
	defer f.Close()
	buf = buf[:0]
	if cap(buf) < 64<<10 {
		buf = make([]byte, 0, 64<<10)
	}
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := f.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

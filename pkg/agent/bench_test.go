package agent

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	testnetns "github.com/livemap/servicemap/internal/testenv/netns"
)

// Benchmarks on 20,000 real sockets: 10,000 connected pairs on loopback
// inside one test namespace (plus its listener). Run with
//
//	go test ./pkg/agent -run '^$' -bench . -benchtime 20x
//
// as root. Figures are recorded in docs/BENCHMARKS.md.

const benchPairs = 10000

type benchFixture struct {
	ns      string
	inode   uint64
	pid     int
	sockets int
	cleanup []func()
}

var (
	benchOnce sync.Once
	bench     *benchFixture
	benchErr  error
)

func TestMain(m *testing.M) {
	if os.Getenv("SM_BENCH_HELPER") == "1" {
		benchHelper()
		return
	}
	code := m.Run()
	if bench != nil {
		for i := len(bench.cleanup) - 1; i >= 0; i-- {
			bench.cleanup[i]()
		}
	}
	os.Exit(code)
}

func getBench(b *testing.B) *benchFixture {
	requireNetNS(b)
	benchOnce.Do(func() { bench, benchErr = newBenchFixture() })
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return bench
}

func newBenchFixture() (*benchFixture, error) {
	sweepLeftovers()
	f := &benchFixture{ns: uniqueName("sm") + "-bench"}
	if out, err := exec.Command("ip", "netns", "add", f.ns).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ip netns add: %v %s", err, out)
	}
	f.cleanup = append(f.cleanup, func() { exec.Command("ip", "netns", "del", f.ns).Run() })
	if out, err := exec.Command("ip", "-n", f.ns, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		return f, fmt.Errorf("lo up: %v %s", err, out)
	}
	var st syscall.Stat_t
	if err := syscall.Stat("/run/netns/"+f.ns, &st); err != nil {
		return f, err
	}
	f.inode = st.Ino
	cmd := exec.Command("ip", "netns", "exec", f.ns, "sleep", "3600")
	if err := cmd.Start(); err != nil {
		return f, err
	}
	f.pid = cmd.Process.Pid
	f.cleanup = append(f.cleanup, func() { cmd.Process.Kill(); cmd.Wait() })

	// The accepting side lives in a helper process (this test binary
	// re-executed) so that neither process needs more than ~10,000 file
	// descriptors: RLIMIT_NOFILE may not be raisable here.
	helper := exec.Command("/proc/self/exe")
	helper.Env = append(os.Environ(), "SM_BENCH_HELPER=1")
	stdin, _ := helper.StdinPipe()
	stdout, _ := helper.StdoutPipe()
	helper.Stderr = os.Stderr
	if err := testnetns.Do(f.ns, helper.Start); err != nil {
		return f, err
	}
	f.cleanup = append(f.cleanup, func() { stdin.Close(); helper.Process.Kill(); helper.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "ready\n" {
		return f, fmt.Errorf("helper: %q %v", line, err)
	}
	var conns []net.Conn
	f.cleanup = append(f.cleanup, func() {
		for _, c := range conns {
			c.Close()
		}
	})
	err = testnetns.Do(f.ns, func() error {
		for i := 0; i < benchPairs; i++ {
			c, err := net.Dial("tcp4", "127.0.0.1:7000")
			if err != nil {
				return fmt.Errorf("dial %d: %w", i, err)
			}
			conns = append(conns, c)
		}
		return nil
	})
	if err != nil {
		return f, err
	}
	// Wait until the helper accepted them all (every pair ESTABLISHED on
	// both sides, nothing left in the accept queue).
	fmt.Fprintln(stdin, benchPairs)
	line, err = bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "accepted\n" {
		return f, fmt.Errorf("helper: %q %v", line, err)
	}
	f.sockets = 2*benchPairs + 1
	return f, nil
}

// benchHelper runs in the bench namespace: it listens on 127.0.0.1:7000,
// accepts and holds connections, answers "accepted" once it holds the
// number written on stdin, and exits when stdin closes.
func benchHelper() {
	ln, err := net.Listen("tcp4", "127.0.0.1:7000")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	fmt.Println("ready")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		want, _ := strconv.Atoi(in.Text())
		for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			mu.Lock()
			n := len(conns)
			mu.Unlock()
			if n >= want {
				break
			}
		}
		fmt.Println("accepted")
	}
	os.Exit(0)
}

// cpuMeter reports process CPU time per op.
type cpuMeter struct{ t0 cpuTimes }

func startCPU() cpuMeter { return cpuMeter{rusage()} }
func (m cpuMeter) report(b *testing.B) {
	t1 := rusage()
	cpu := (t1.user - m.t0.user) + (t1.sys - m.t0.sys)
	b.ReportMetric(cpu*1000/float64(b.N), "cpu-ms/op")
}

func benchPoll(b *testing.B, m Method) {
	f := getBench(b)
	a := New(Config{Method: m})
	a.Poll() // warm up buffers and the previous-poll state
	b.ResetTimer()
	cpu := startCPU()
	var sockets int
	for i := 0; i < b.N; i++ {
		s := a.Poll()
		sockets = s.Cost.SocketsSeen
		ns := findNS(s, f.inode)
		if len(ns) != 1 || len(ns[0].Connections)+len(ns[0].Listeners) != f.sockets {
			b.Fatalf("bench namespace not read fully: %d", len(ns))
		}
		if s.Method != string(m) {
			b.Fatalf("method %s", s.Method)
		}
	}
	cpu.report(b)
	b.ReportMetric(float64(sockets), "sockets/op")
}

// BenchmarkSnapshotNetlink is a full poll of the node (walk /proc, every
// namespace, addresses, counters, classification) by sock_diag.
func BenchmarkSnapshotNetlink(b *testing.B) { benchPoll(b, MethodNetlink) }

// BenchmarkSnapshotProc is the same poll reading /proc/PID/net/tcp{,6}.
func BenchmarkSnapshotProc(b *testing.B) { benchPoll(b, MethodProc) }

func benchTable(b *testing.B, m Method) {
	f := getBench(b)
	a := New(Config{Method: m})
	nsf, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", f.pid))
	if err != nil {
		b.Fatal(err)
	}
	defer nsf.Close()
	b.ResetTimer()
	cpu := startCPU()
	for i := 0; i < b.N; i++ {
		errs := errCounts{}
		rows, _ := a.readTCP(int(nsf.Fd()), f.pid, errs)
		if len(rows) != f.sockets || len(errs) != 0 {
			b.Fatalf("rows %d errs %v", len(rows), errs)
		}
	}
	cpu.report(b)
}

// BenchmarkTableNetlink reads only the bench namespace's TCP table (IPv4
// and IPv6 dumps, decoded rows), the part comparable to ss.
func BenchmarkTableNetlink(b *testing.B) { benchTable(b, MethodNetlink) }

// BenchmarkTableProc reads and parses the namespace's /proc/PID/net/tcp{,6}.
func BenchmarkTableProc(b *testing.B) { benchTable(b, MethodProc) }

// BenchmarkSSTanH runs `ss -tanH` (iproute2, sock_diag plus formatting)
// inside the bench namespace; cpu-ms/op is the child's user+sys time.
func BenchmarkSSTanH(b *testing.B) {
	f := getBench(b)
	if _, err := exec.LookPath("ss"); err != nil {
		b.Skip("ss not installed")
	}
	var childCPU time.Duration
	for i := 0; i < b.N; i++ {
		var out bytes.Buffer
		cmd := exec.Command("ss", "-tanH")
		cmd.Stdout = &out
		// Fork from a thread inside the namespace: the child inherits it.
		if err := testnetns.Do(f.ns, cmd.Start); err != nil {
			b.Fatal(err)
		}
		if err := cmd.Wait(); err != nil {
			b.Fatal(err)
		}
		childCPU += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		if n := bytes.Count(out.Bytes(), []byte{'\n'}); n != f.sockets {
			b.Fatalf("ss printed %d lines, want %d", n, f.sockets)
		}
	}
	b.ReportMetric(childCPU.Seconds()*1000/float64(b.N), "cpu-ms/op")
}

// BenchmarkEncodeSnapshot marshals a 20,000-socket snapshot to JSON.
func BenchmarkEncodeSnapshot(b *testing.B) {
	getBench(b)
	s := New(Config{Method: MethodNetlink}).Poll()
	b.ResetTimer()
	var n int
	for i := 0; i < b.N; i++ {
		out, err := EncodeBounded(s, DefaultMaxResponseBytes)
		if err != nil {
			b.Fatal(err)
		}
		n = len(out)
	}
	b.ReportMetric(float64(n), "bytes")
}

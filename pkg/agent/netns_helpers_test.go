package agent

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/livemap/servicemap/internal/testenv"
	testnetns "github.com/livemap/servicemap/internal/testenv/netns"
)

// This file builds "pods" for the tests: network namespaces on a bridge
// that lives in a test-owned hub namespace, so nothing is added to the root
// namespace. Addresses are 10.244.<n>.0/24 and fd00:244::/64, only inside
// those namespaces, with no route anywhere else.

func requireNetNS(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Missing(t, "needs root for network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		testenv.Missing(t, "needs iproute2 (ip)")
	}
}

func uniqueName(prefix string) string {
	var b [4]byte
	rand.Read(b[:])
	return fmt.Sprintf("%s%d-%s", prefix, os.Getpid(), hex.EncodeToString(b[:]))
}

var leftoverRe = regexp.MustCompile(`^sm(\d+)-[0-9a-f]{8}-(hub|p\d+|bench)$`)

// sweepLeftovers deletes namespaces of earlier test runs whose process is
// gone (a run killed before its cleanup could run).
func sweepLeftovers() {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		m := leftoverRe.FindStringSubmatch(f[0])
		if m == nil {
			continue
		}
		if pid, _ := strconv.Atoi(m[1]); pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat("/proc/" + m[1]); err == nil {
			continue
		}
		exec.Command("ip", "netns", "del", f[0]).Run()
	}
}

func runCmd(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

type testPod struct {
	name   string // netns name (under /run/netns)
	v4, v6 netip.Addr
	inode  uint64
	pids   []int
}

type testNet struct {
	hub  string
	pods []*testPod
}

// newTestNet creates a hub namespace with a bridge and n pods, pod i having
// 10.244.<subnet>.(i+2)/24 and fd00:244::(i+2)/64 on eth0, and one sleep
// process (so the agent finds it by walking /proc). Everything is removed
// in t.Cleanup, also on failure.
func newTestNet(t testing.TB, n int) *testNet {
	t.Helper()
	requireNetNS(t)
	sweepLeftovers()
	base := uniqueName("sm")
	var sb [1]byte
	rand.Read(sb[:])
	subnet := int(sb[0])%200 + 10
	tn := &testNet{hub: base + "-hub"}
	runCmd(t, "ip", "netns", "add", tn.hub)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", tn.hub).Run() })
	runCmd(t, "ip", "-n", tn.hub, "link", "set", "lo", "up")
	runCmd(t, "ip", "-n", tn.hub, "link", "add", "br0", "type", "bridge")
	runCmd(t, "ip", "-n", tn.hub, "link", "set", "br0", "up")
	for i := 0; i < n; i++ {
		p := &testPod{
			name: fmt.Sprintf("%s-p%d", base, i),
			v4:   netip.AddrFrom4([4]byte{10, 244, byte(subnet), byte(i + 2)}),
			v6:   netip.MustParseAddr(fmt.Sprintf("fd00:244::%d", i+2)),
		}
		runCmd(t, "ip", "netns", "add", p.name)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", p.name).Run() })
		veth := fmt.Sprintf("vp%d", i)
		runCmd(t, "ip", "-n", tn.hub, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", p.name)
		runCmd(t, "ip", "-n", tn.hub, "link", "set", veth, "master", "br0", "up")
		runCmd(t, "ip", "-n", p.name, "link", "set", "lo", "up")
		runCmd(t, "ip", "-n", p.name, "link", "set", "eth0", "up")
		runCmd(t, "ip", "-n", p.name, "addr", "add", p.v4.String()+"/24", "dev", "eth0")
		runCmd(t, "ip", "-n", p.name, "addr", "add", p.v6.String()+"/64", "dev", "eth0", "nodad")
		var st syscall.Stat_t
		if err := syscall.Stat("/run/netns/"+p.name, &st); err != nil {
			t.Fatal(err)
		}
		p.inode = st.Ino
		tn.pods = append(tn.pods, p)
		tn.startProcess(t, p)
	}
	return tn
}

// startProcess starts a sleep process inside the pod's namespace.
func (tn *testNet) startProcess(t testing.TB, p *testPod) {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", p.name, "sleep", "3600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// ip netns exec execs sleep in place: wait until the PID is in the pod.
	path := fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid)
	deadline := time.Now().Add(5 * time.Second)
	for {
		var st syscall.Stat_t
		if syscall.Stat(path, &st) == nil && st.Ino == p.inode {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d did not enter %s", cmd.Process.Pid, p.name)
		}
		time.Sleep(5 * time.Millisecond)
	}
	p.pids = append(p.pids, cmd.Process.Pid)
}

// inNS runs fn inside the named namespace; sockets created by fn stay there.
func inNS(t testing.TB, name string, fn func() error) {
	t.Helper()
	if err := testnetns.Do(name, fn); err != nil {
		t.Fatal(err)
	}
}

// echoServer is a listener in a pod that keeps accepted connections open
// until the peer closes, then closes its side.
type echoServer struct {
	ln     net.Listener
	mu     sync.Mutex
	closed chan netip.AddrPort // remote address of each connection closed by the server
}

func listenIn(t testing.TB, pod, network, addr string) *echoServer {
	t.Helper()
	s := &echoServer{closed: make(chan netip.AddrPort, 128)}
	inNS(t, pod, func() (err error) {
		s.ln, err = net.Listen(network, addr)
		return err
	})
	var wg sync.WaitGroup
	t.Cleanup(func() { s.ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := s.ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				io.Copy(io.Discard, c) // until the client closes
				c.Close()
				s.closed <- c.RemoteAddr().(*net.TCPAddr).AddrPort()
			}()
		}
	}()
	return s
}

func dialIn(t testing.TB, pod, network, addr string) net.Conn {
	t.Helper()
	var c net.Conn
	inNS(t, pod, func() (err error) {
		d := net.Dialer{Timeout: 5 * time.Second}
		c, err = d.Dial(network, addr)
		return err
	})
	t.Cleanup(func() { c.Close() })
	return c
}

func addrPort(a net.Addr) netip.AddrPort {
	ap := a.(*net.TCPAddr).AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// ensureIPTables installs Debian's iptables when it is missing and we are
// root (the test environment is Debian); it skips the test if that fails.
func ensureIPTables(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("iptables"); err == nil {
		return
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		testenv.Missing(t, "iptables missing and no apt-get")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "apt-get", "install", "-y", "iptables").CombinedOutput()
	if err != nil {
		out2, _ := exec.CommandContext(ctx, "sh", "-c", "apt-get update && apt-get install -y iptables").CombinedOutput()
		if _, err := exec.LookPath("iptables"); err != nil {
			testenv.Missing(t, "cannot install iptables: %v\n%s\n%s", err, out, out2)
		}
	}
}

// ssRows runs `ss -tanH` inside a namespace (for debugging output).
func ssRows(name string) string {
	out, _ := exec.Command("ip", "netns", "exec", name, "ss", "-tanH").CombinedOutput()
	var b strings.Builder
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		b.WriteString("    " + sc.Text() + "\n")
	}
	return b.String()
}

package netns

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/livemap/servicemap/internal/testenv"
)

// Pod is a named network namespace standing in for a pod: one address on
// eth0 and a process living in it, so a node agent walking /proc finds it.
type Pod struct {
	NS string // name under /run/netns
	IP string
}

// RequireRoot stops the test unless it runs as root with ip and iptables:
// a skip when run by hand, a failure under the README's test command as
// root (testenv.Missing).
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Missing(t, "needs root for network namespaces")
		return
	}
	for _, bin := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(bin); err != nil {
			testenv.Missing(t, "needs %s", bin)
			return
		}
	}
}

// Sh runs a command and fails the test with its output if it fails.
func Sh(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", args, err, out)
	}
}

// PodPair makes two "pods" joined by a veth pair, addressed .2 and .3 in a
// random /24 of net16 (e.g. "10.245"), each with a default route into the
// pair and nothing else: no address they use is reachable outside them.
// Everything is removed at cleanup.
func PodPair(t testing.TB, net16 string) (client, server Pod) {
	t.Helper()
	var rb [5]byte
	rand.Read(rb[:])
	base := fmt.Sprintf("smp%d-%s", os.Getpid(), hex.EncodeToString(rb[:4]))
	subnet := int(rb[4])%200 + 10
	client = Pod{NS: base + "-a", IP: fmt.Sprintf("%s.%d.2", net16, subnet)}
	server = Pod{NS: base + "-b", IP: fmt.Sprintf("%s.%d.3", net16, subnet)}
	for _, p := range []Pod{client, server} {
		Sh(t, "ip", "netns", "add", p.NS)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", p.NS).Run() })
	}
	Sh(t, "ip", "-n", client.NS, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", server.NS)
	for _, p := range []Pod{client, server} {
		Sh(t, "ip", "-n", p.NS, "link", "set", "lo", "up")
		Sh(t, "ip", "-n", p.NS, "link", "set", "eth0", "up")
		Sh(t, "ip", "-n", p.NS, "addr", "add", p.IP+"/24", "dev", "eth0")
		Sh(t, "ip", "-n", p.NS, "route", "add", "default", "dev", "eth0")
		p.keepProcess(t)
	}
	return client, server
}

// DNAT makes connections from the pod to vip:port go to to (ip:port), as
// kube-proxy's iptables rules do for a ClusterIP.
func (p Pod) DNAT(t testing.TB, vip string, port int, to string) {
	t.Helper()
	Sh(t, "ip", "netns", "exec", p.NS, "iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-d", vip,
		"--dport", fmt.Sprint(port), "-j", "DNAT", "--to-destination", to)
}

// keepProcess starts a sleeping process in the namespace and waits until it
// is there, so /proc/PID/ns/net leads to it.
func (p Pod) keepProcess(t testing.TB) {
	t.Helper()
	var want syscall.Stat_t
	if err := syscall.Stat("/run/netns/"+p.NS, &want); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", p.NS, "sleep", "600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(5 * time.Second)
	for {
		var st syscall.Stat_t
		if syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid), &st) == nil && st.Ino == want.Ino {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sleep did not enter %s", p.NS)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Listen opens a TCP listener inside the pod.
func (p Pod) Listen(t testing.TB, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	if err := Do(p.NS, func() (err error) { ln, err = net.Listen("tcp", addr); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// Dial connects from inside the pod.
func (p Pod) Dial(t testing.TB, addr string) net.Conn {
	t.Helper()
	var c net.Conn
	if err := Do(p.NS, func() (err error) { c, err = net.DialTimeout("tcp", addr, 5*time.Second); return err }); err != nil {
		t.Fatal(err)
	}
	return c
}

// Package nginx starts a real nginx for tests: a non-daemon child with a
// temporary prefix and configuration, listening on free loopback ports,
// proxying to upstreams the test runs, and writing its access log in the
// agent's servicemap JSON format. When the binary is missing and the test
// runs as root, it installs Debian's nginx-light package first.
package nginx

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/livemap/servicemap/pkg/agent/accesslog"
)

// T is what the harness needs of a test; *testing.T fits.
type T interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	Cleanup(func())
	TempDir() string
}

// Binary is where Debian installs nginx.
const Binary = "/usr/sbin/nginx"

// Upstream is one upstream block; requests to /NAME/… are passed to it.
type Upstream struct {
	Name string
	Addr string // host:port of the test's backend
	// GRPC passes with grpc_pass (h2c backend) on the gRPC listener instead
	// of proxy_pass on the HTTP one.
	GRPC bool
}

// Options for Start.
type Options struct {
	Upstreams []Upstream
	// RealIPFromLoopback trusts X-Forwarded-For from 127.0.0.0/8, so a test
	// can make requests appear to come from any client address (as behind
	// a load balancer).
	RealIPFromLoopback bool
	// Workers is worker_processes (default 2).
	Workers int
	// TextLog also writes every request to TextAccessLog in the
	// servicemap_text (combined plus) format.
	TextLog bool
}

// Server is a running nginx.
type Server struct {
	Addr          string // HTTP listener, 127.0.0.1:port
	GRPCAddr      string // h2c listener for GRPC upstreams ("" if none)
	AccessLog     string
	TextAccessLog string // with Options.TextLog
	Prefix        string
	cmd           *exec.Cmd
	done          chan struct{}
}

var installOnce sync.Once

// Path returns the nginx binary, installing nginx-light when missing and
// running as root; it fails the test when there is none.
func Path(t T) string {
	t.Helper()
	if _, err := os.Stat(Binary); err == nil {
		return Binary
	}
	if os.Geteuid() == 0 {
		installOnce.Do(func() {
			for _, args := range [][]string{{"apt-get", "update", "-qq"}, {"apt-get", "install", "-y", "-qq", "--no-install-recommends", "nginx-light"}} {
				cmd := exec.Command(args[0], args[1:]...)
				cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Logf("%v: %v\n%s", args, err, out)
				}
			}
		})
	}
	if _, err := os.Stat(Binary); err != nil {
		t.Fatalf("nginx not found at %s (run scripts/setup.sh as root to install nginx-light): %v", Binary, err)
	}
	return Binary
}

func freePort(t T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Start writes the configuration, starts nginx in the foreground and waits
// until it accepts connections. It is stopped (SIGQUIT, graceful) in
// t.Cleanup.
func Start(t T, opts Options) *Server {
	t.Helper()
	bin := Path(t)
	prefix := t.TempDir()
	for _, d := range []string{"logs", "tmp"} {
		if err := os.MkdirAll(filepath.Join(prefix, d), 0o777); err != nil {
			t.Fatal(err)
		}
	}
	s := &Server{Addr: freePort(t), AccessLog: filepath.Join(prefix, "logs", "access.log"), Prefix: prefix, done: make(chan struct{})}
	hasGRPC := false
	for _, u := range opts.Upstreams {
		hasGRPC = hasGRPC || u.GRPC
	}
	if hasGRPC {
		s.GRPCAddr = freePort(t)
	}
	if opts.TextLog {
		s.TextAccessLog = filepath.Join(prefix, "logs", "access.txt")
	}
	conf := filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(conf, []byte(s.config(opts)), 0o644); err != nil {
		t.Fatal(err)
	}
	s.cmd = exec.Command(bin, "-p", prefix, "-c", conf, "-e", filepath.Join(prefix, "logs", "error.log"))
	s.cmd.Stdout, s.cmd.Stderr = os.Stderr, os.Stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.cmd.Wait(); close(s.done) }()
	t.Cleanup(s.stop)
	deadline := time.Now().Add(10 * time.Second)
	for _, addr := range []string{s.Addr, s.GRPCAddr} {
		for addr != "" {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
				break
			}
			select {
			case <-s.done:
				errLog, _ := os.ReadFile(filepath.Join(prefix, "logs", "error.log"))
				t.Fatalf("nginx exited: %v\n%s", s.cmd.ProcessState, errLog)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("nginx does not listen on %s: %v", addr, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return s
}

func (s *Server) config(opts Options) string {
	var b strings.Builder
	workers := opts.Workers
	if workers <= 0 {
		workers = 2
	}
	fmt.Fprintf(&b, "daemon off;\nmaster_process on;\nworker_processes %d;\npid %s;\n", workers, filepath.Join(s.Prefix, "nginx.pid"))
	if os.Geteuid() == 0 {
		b.WriteString("user root root;\n") // workers keep access to the temp prefix
	}
	b.WriteString("events { worker_connections 256; }\nhttp {\n")
	b.WriteString(accesslog.NginxConfig + "\n")
	fmt.Fprintf(&b, "access_log %s servicemap;\n", s.AccessLog)
	if s.TextAccessLog != "" {
		b.WriteString(accesslog.NginxTextConfig + "\n")
		fmt.Fprintf(&b, "access_log %s servicemap_text;\n", s.TextAccessLog)
	}
	for _, d := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		fmt.Fprintf(&b, "%s_temp_path %s;\n", d, filepath.Join(s.Prefix, "tmp", d))
	}
	if opts.RealIPFromLoopback {
		b.WriteString("set_real_ip_from 127.0.0.0/8;\nreal_ip_header X-Forwarded-For;\n")
	}
	for _, u := range opts.Upstreams {
		fmt.Fprintf(&b, "upstream %s { server %s; }\n", u.Name, u.Addr)
	}
	fmt.Fprintf(&b, "server {\n listen %s;\n", s.Addr)
	b.WriteString(" location = /gateway-health { return 200 \"ok\\n\"; }\n")
	for _, u := range opts.Upstreams {
		if !u.GRPC {
			fmt.Fprintf(&b, " location /%s/ { proxy_pass http://%s; }\n", u.Name, u.Name)
		}
	}
	b.WriteString("}\n")
	if s.GRPCAddr != "" {
		fmt.Fprintf(&b, "server {\n listen %s http2;\n", s.GRPCAddr)
		for _, u := range opts.Upstreams {
			if u.GRPC {
				fmt.Fprintf(&b, " location /%s. { set $servicemap_service %s; grpc_pass grpc://%s; }\n", u.Name, u.Name, u.Name)
			}
		}
		b.WriteString("}\n")
	}
	b.WriteString("}\n")
	return b.String()
}

// Reopen makes nginx reopen its log files (SIGUSR1), as logrotate does
// after renaming them.
func (s *Server) Reopen() error { return s.cmd.Process.Signal(syscall.SIGUSR1) }

// ErrorLog returns nginx's error log (for failure messages).
func (s *Server) ErrorLog() string {
	b, _ := os.ReadFile(filepath.Join(s.Prefix, "logs", "error.log"))
	return string(b)
}

func (s *Server) stop() {
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGQUIT) // graceful: finish requests, flush logs
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

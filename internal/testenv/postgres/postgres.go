// Package postgres starts throwaway PostgreSQL servers for tests: a fresh
// cluster from the system's PostgreSQL binaries on a free loopback port, with
// password authentication and, on request, TLS with a test CA. When the
// binaries are missing and the test runs as root, it installs Debian's
// `postgresql` package first.
package postgres

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// T is what the harness needs of a test; *testing.T fits, and so does the
// demo command's own implementation.
type T interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	Cleanup(func())
}

// Server is a running throwaway cluster.
type Server struct {
	Addr      string // 127.0.0.1:port
	User      string
	Password  string
	CACertPEM string // set with Options.TLS
	dir       string
	cmd       *exec.Cmd
}

// Options for Start.
type Options struct {
	TLS bool // serve TLS with a certificate for "localhost" signed by a test CA
}

var installOnce sync.Once

// BinDir finds the newest installed PostgreSQL server binaries, installing
// them when missing and running as root.
func BinDir(t T) string {
	find := func() string {
		dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
		sort.Strings(dirs)
		if len(dirs) == 0 {
			return ""
		}
		return filepath.Dir(dirs[len(dirs)-1])
	}
	if d := find(); d != "" {
		return d
	}
	if os.Geteuid() == 0 {
		installOnce.Do(func() {
			for _, args := range [][]string{{"apt-get", "update"}, {"apt-get", "install", "-y", "--no-install-recommends", "postgresql"}} {
				cmd := exec.Command(args[0], args[1:]...)
				cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Logf("%v: %v\n%s", args, err, out)
				}
			}
		})
	}
	d := find()
	if d == "" {
		t.Fatalf("PostgreSQL server binaries not found under /usr/lib/postgresql and could not be installed (run as root, or apt-get install postgresql)")
	}
	return d
}

// Start runs a new cluster for the test and stops it when the test ends.
func Start(t T, opts Options) *Server {
	t.Helper()
	bin := BinDir(t)
	dir, err := os.MkdirTemp("", "servicemap-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	s := &Server{User: "postgres", Password: "test-password-" + strconv.Itoa(os.Getpid()), dir: dir}
	cred := credential(t, dir)
	data := filepath.Join(dir, "data")
	pwfile := filepath.Join(dir, "pw")
	must(t, os.WriteFile(pwfile, []byte(s.Password+"\n"), 0o600))
	chown(t, cred, dir, pwfile)
	run(t, cred, filepath.Join(bin, "initdb"), "-D", data, "-U", s.User, "--pwfile", pwfile,
		"--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--locale=C", "--no-sync")
	port := freePort(t)
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	conf := fmt.Sprintf("listen_addresses = '127.0.0.1'\nport = %d\nunix_socket_directories = '%s'\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\nshared_buffers = 256MB\nmax_connections = 50\n", port, dir)
	if opts.TLS {
		s.CACertPEM = writeTLS(t, data)
		chown(t, cred, filepath.Join(data, "server.crt"), filepath.Join(data, "server.key"))
		conf += "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n"
	}
	f, err := os.OpenFile(filepath.Join(data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	must(t, err)
	_, err = f.WriteString(conf)
	must(t, err)
	must(t, f.Close())
	s.cmd = exec.Command(filepath.Join(bin, "postgres"), "-D", data)
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true}
	logFile, err := os.Create(filepath.Join(dir, "postgres.log"))
	must(t, err)
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	must(t, s.cmd.Start())
	t.Cleanup(s.stop)
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := pgx.Connect(context.Background(), s.URL("postgres"))
		if err == nil {
			_ = conn.Close(context.Background())
			return s
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "postgres.log"))
			t.Fatalf("PostgreSQL did not start: %v\n%s", err, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *Server) stop() {
	if s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(syscall.SIGINT) // fast shutdown
		done := make(chan struct{})
		go func() { _ = s.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = s.cmd.Process.Kill()
		}
	}
}

// URL is a connection string for a database.
func (s *Server) URL(database string) string {
	mode := "disable"
	if s.CACertPEM != "" {
		mode = "require"
	}
	return fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=%s", s.User, s.Password, s.Addr, database, mode)
}

// CreateDatabase makes a database and returns its name.
func (s *Server) CreateDatabase(t T, name string) string {
	t.Helper()
	s.Exec(t, "postgres", "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	return name
}

// Exec runs SQL in a database.
func (s *Server) Exec(t T, database, sql string, args ...any) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), s.URL(database))
	must(t, err)
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("exec %q: %v", sql, err)
	}
}

// Connect opens a connection (the caller closes it).
func (s *Server) Connect(t T, database string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), s.URL(database))
	must(t, err)
	return conn
}

// credential: initdb refuses to run as root, so root runs it as `postgres`
// (or `nobody`).
func credential(t T, dir string) *syscall.Credential {
	if os.Geteuid() != 0 {
		return nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		chown(t, cred, dir)
		return cred
	}
	t.Fatalf("running as root but neither user postgres nor nobody exists")
	return nil
}

func chown(t T, cred *syscall.Credential, paths ...string) {
	if cred == nil {
		return
	}
	for _, p := range paths {
		must(t, os.Chown(p, int(cred.Uid), int(cred.Gid)))
	}
}

func run(t T, cred *syscall.Credential, name string, args ...string) {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

func freePort(t T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// writeTLS makes a CA and a server certificate for localhost/127.0.0.1 in the
// data directory and returns the CA's PEM.
func writeTLS(t T, data string) string {
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "servicemap test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	must(t, err)
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	must(t, err)
	keyDER, err := x509.MarshalECPrivateKey(key)
	must(t, err)
	must(t, os.WriteFile(filepath.Join(data, "server.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	must(t, os.WriteFile(filepath.Join(data, "server.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600))
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}))
}

func must(t T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Package kubeapi runs a real kube-apiserver backed by a real etcd for tests.
//
// The binaries are built from the Go module proxy by scripts/kube-binaries.sh
// (module tools/kube) and cached in .cache/bin at the repository root. Start
// runs that script, which returns at once when the binaries are up to date;
// the first build takes several minutes, so CI should run the script before
// `go test`, or give go test a -timeout above 10m.
//
// There is no controller-manager, scheduler or kubelet: tests create Pods,
// write their status (podIP, phase) through the status subresource, and
// create EndpointSlices themselves, as a cluster would show them.
//
// Two users exist: AdminUser (group system:masters) and RestrictedUser, who
// has no groups and so, under RBAC, only what system:authenticated gets by
// default (discovery, no reading of resources) until a test grants more.
package kubeapi

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/rest"
)

const (
	// AdminUser is the name of the user behind AdminConfig; it is in the
	// system:masters group.
	AdminUser = "admin"
	// RestrictedUser is the name of the user behind RestrictedToken; it
	// has no groups and no RBAC bindings until a test creates some.
	RestrictedUser = "servicemap-plugin"
	// ServiceClusterIPRange is the range Services get ClusterIPs from.
	ServiceClusterIPRange = "10.96.0.0/16"
)

// StartTimeout bounds how long Start and Restart wait for etcd and for
// kube-apiserver's /readyz.
var StartTimeout = 90 * time.Second

// Cluster is a running etcd and kube-apiserver pair on loopback ports.
type Cluster struct {
	dir     string // temp dir holding data, certs, keys, tokens and logs
	certDir string

	apiserverBin  string
	apiserverArgs []string
	port          int
	url           string

	adminToken      string
	restrictedToken string

	mu        sync.Mutex
	etcd      *process
	apiserver *process
	caPEM     []byte
	restarts  int
}

// Start builds (if needed) and starts etcd and kube-apiserver, waits until
// /readyz answers ok, and registers t.Cleanup to stop both and remove their
// files. It fails the test with t.Fatalf when anything cannot be built or
// started; it never skips.
func Start(t testing.TB) *Cluster {
	t.Helper()
	bins, err := binaries()
	if err != nil {
		t.Fatalf("kubeapi: cannot get kube-apiserver and etcd binaries: %v", err)
	}

	dir, err := os.MkdirTemp("", "kubeapi-")
	if err != nil {
		t.Fatalf("kubeapi: %v", err)
	}
	c := &Cluster{
		dir:          dir,
		certDir:      filepath.Join(dir, "certs"),
		apiserverBin: bins.apiserver,
	}
	t.Cleanup(func() {
		c.stop()
		if t.Failed() {
			for _, name := range []string{"etcd.log", "kube-apiserver.log"} {
				t.Logf("kubeapi: last lines of %s:\n%s", name, tailFile(filepath.Join(dir, name), 40))
			}
		}
		if os.Getenv("KUBEAPI_KEEP_DIR") != "" {
			t.Logf("kubeapi: KUBEAPI_KEEP_DIR is set; keeping %s", dir)
			return
		}
		os.RemoveAll(dir)
	})

	if err := c.startEtcd(bins.etcd); err != nil {
		t.Fatalf("kubeapi: %v", err)
	}
	if err := c.prepareAPIServer(); err != nil {
		t.Fatalf("kubeapi: %v", err)
	}
	if err := c.startAPIServer(); err != nil {
		t.Fatalf("kubeapi: %v", err)
	}
	return c
}

// URL is the API server's https URL, e.g. https://127.0.0.1:34567.
func (c *Cluster) URL() string { return c.url }

// CACertPEM returns the PEM certificates that verify the API server's
// serving certificate (the self-signed pair kube-apiserver wrote to its
// --cert-dir; it is kept across Restart).
func (c *Cluster) CACertPEM() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.caPEM)
}

// AdminToken is the bearer token of AdminUser (system:masters).
func (c *Cluster) AdminToken() string { return c.adminToken }

// RestrictedToken is the bearer token of RestrictedUser.
func (c *Cluster) RestrictedToken() string { return c.restrictedToken }

// AdminConfig returns a new rest.Config for AdminUser.
func (c *Cluster) AdminConfig() *rest.Config { return c.ConfigForToken(c.adminToken) }

// ConfigForToken returns a new rest.Config that authenticates with the
// bearer token and verifies the server against CACertPEM.
func (c *Cluster) ConfigForToken(token string) *rest.Config {
	return &rest.Config{
		Host:        c.url,
		BearerToken: token,
		TLSClientConfig: rest.TLSClientConfig{
			CAData: c.CACertPEM(),
		},
		// No Timeout: it would cut informers' long-running watches.
		QPS:   200,
		Burst: 400,
	}
}

// Restart stops kube-apiserver and starts it again on the same port with the
// same etcd, certificates and tokens, and waits until it is ready. Open
// watches break, as they would when an API server restarts.
func (c *Cluster) Restart(t testing.TB) {
	t.Helper()
	c.mu.Lock()
	p := c.apiserver
	c.apiserver = nil
	c.restarts++
	c.mu.Unlock()
	begin := time.Now()
	if p != nil {
		p.stop(30 * time.Second)
	}
	stopped := time.Now()
	if err := c.startAPIServer(); err != nil {
		t.Fatalf("kubeapi: restart: %v", err)
	}
	t.Logf("kubeapi: kube-apiserver restarted (stopped in %v, ready again in %v)",
		stopped.Sub(begin).Round(time.Millisecond), time.Since(stopped).Round(time.Millisecond))
}

func (c *Cluster) stop() {
	c.mu.Lock()
	api, etcd := c.apiserver, c.etcd
	c.apiserver, c.etcd = nil, nil
	c.mu.Unlock()
	if api != nil {
		api.stop(30 * time.Second)
	}
	if etcd != nil {
		etcd.stop(15 * time.Second)
	}
}

func (c *Cluster) startEtcd(bin string) error {
	data := filepath.Join(c.dir, "etcd")
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		ports, err := freePorts(2)
		if err != nil {
			return err
		}
		client := "http://127.0.0.1:" + strconv.Itoa(ports[0])
		peer := "http://127.0.0.1:" + strconv.Itoa(ports[1])
		os.RemoveAll(data)
		p, err := startProcess(filepath.Join(c.dir, "etcd.log"), bin,
			"--name", "default",
			"--data-dir", data,
			"--listen-client-urls", client,
			"--advertise-client-urls", client,
			"--listen-peer-urls", peer,
			"--initial-advertise-peer-urls", peer,
			"--initial-cluster", "default="+peer,
			"--initial-cluster-state", "new",
			"--unsafe-no-fsync",
			"--log-level", "warn",
		)
		if err != nil {
			return fmt.Errorf("start etcd: %w", err)
		}
		err = waitFor(p, StartTimeout, func() error {
			return etcdHealthy(client)
		})
		if err == nil {
			c.etcd = p
			c.apiserverArgs = append(c.apiserverArgs[:0], "--etcd-servers", client)
			return nil
		}
		p.stop(5 * time.Second)
		lastErr = fmt.Errorf("etcd did not become healthy: %w\n%s", err, tailFile(p.logPath, 20))
		if !p.exited() {
			break // not a port clash: do not retry
		}
	}
	return lastErr
}

func etcdHealthy(client string) error {
	resp, err := http.Get(client + "/health")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(`"health":"true"`)) {
		return fmt.Errorf("etcd /health: %d %s", resp.StatusCode, body)
	}
	return nil
}

// prepareAPIServer writes the service-account key and token file and fixes
// the secure port, so that Restart reuses all of them.
func (c *Cluster) prepareAPIServer() error {
	if err := os.MkdirAll(c.certDir, 0o700); err != nil {
		return err
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	saKey := filepath.Join(c.dir, "sa.key")
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := os.WriteFile(saKey, keyPEM, 0o600); err != nil {
		return err
	}
	c.adminToken = randomToken()
	c.restrictedToken = randomToken()
	// token,user,uid,"group1,group2"
	tokens := fmt.Sprintf("%s,%s,%s,\"system:masters\"\n%s,%s,%s\n",
		c.adminToken, AdminUser, AdminUser,
		c.restrictedToken, RestrictedUser, RestrictedUser)
	tokenFile := filepath.Join(c.dir, "tokens.csv")
	if err := os.WriteFile(tokenFile, []byte(tokens), 0o600); err != nil {
		return err
	}
	ports, err := freePorts(1)
	if err != nil {
		return err
	}
	c.port = ports[0]
	c.url = "https://127.0.0.1:" + strconv.Itoa(c.port)
	c.apiserverArgs = append(c.apiserverArgs,
		"--secure-port", strconv.Itoa(c.port),
		"--bind-address", "127.0.0.1",
		"--advertise-address", "127.0.0.1",
		"--cert-dir", c.certDir,
		"--service-account-key-file", saKey,
		"--service-account-signing-key-file", saKey,
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--token-auth-file", tokenFile,
		"--authorization-mode", "RBAC",
		"--service-cluster-ip-range", ServiceClusterIPRange,
		// No controller-manager creates the "default" ServiceAccount.
		"--disable-admission-plugins", "ServiceAccount",
		// No kubelet or controller owns the "kubernetes" Service's endpoints.
		"--endpoint-reconciler-type", "none",
		"--enable-priority-and-fairness=false",
		// On SIGTERM, end open watches instead of waiting for them until
		// the 60s shutdown timeout: Restart then takes seconds, and clients
		// see their watch closed as in a rolling restart.
		"--shutdown-watch-termination-grace-period", "2s",
		"--allow-privileged=true",
		"--profiling=false",
		"--v", "1",
	)
	return nil
}

func (c *Cluster) startAPIServer() error {
	logPath := filepath.Join(c.dir, "kube-apiserver.log")
	if c.restarts > 0 {
		logPath = filepath.Join(c.dir, fmt.Sprintf("kube-apiserver.%d.log", c.restarts))
	}
	// Wait for the port to be free again after a restart.
	deadline := time.Now().Add(StartTimeout)
	for {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port)))
		if err == nil {
			l.Close()
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("port %d stays busy: %w", c.port, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	p, err := startProcess(logPath, c.apiserverBin, c.apiserverArgs...)
	if err != nil {
		return fmt.Errorf("start kube-apiserver: %w", err)
	}
	err = waitFor(p, StartTimeout, c.ready)
	if err != nil {
		p.stop(10 * time.Second)
		return fmt.Errorf("kube-apiserver did not become ready: %w\n%s", err, tailFile(logPath, 30))
	}
	c.mu.Lock()
	c.apiserver = p
	c.mu.Unlock()
	if c.restarts > 0 {
		// Keep kube-apiserver.log the newest log for failure reports.
		appendFile(filepath.Join(c.dir, "kube-apiserver.log"), logPath)
	}
	return nil
}

// ready loads the serving certificate once kube-apiserver has written it and
// asks /readyz over verified TLS.
func (c *Cluster) ready() error {
	c.mu.Lock()
	ca := c.caPEM
	c.mu.Unlock()
	if ca == nil {
		b, err := os.ReadFile(filepath.Join(c.certDir, "apiserver.crt"))
		if err != nil {
			return err
		}
		ca = b
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return errors.New("no certificate in apiserver.crt yet")
	}
	client := &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool},
		},
	}
	defer client.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodGet, c.url+"/readyz", nil)
	req.Header.Set("Authorization", "Bearer "+c.adminToken)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != "ok" {
		return fmt.Errorf("/readyz: %d %s", resp.StatusCode, lastLines(string(body), 5))
	}
	c.mu.Lock()
	c.caPEM = ca
	c.mu.Unlock()
	return nil
}

// process is a child process whose output goes to a log file.
type process struct {
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error
}

func startProcess(logPath, bin string, args ...string) (*process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, err
	}
	p := &process{cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, then SIGKILL after grace.
func (p *process) stop(grace time.Duration) {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// waitFor polls check until it succeeds, the process exits, or timeout.
func waitFor(p *process, timeout time.Duration, check func() error) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last error
	for {
		if last = check(); last == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("process exited (%v); last check: %v", p.err, last)
		case <-ctx.Done():
			return fmt.Errorf("timed out after %v; last check: %v", timeout, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func randomToken() string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	return lastLines(string(b), n)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func appendFile(dst, src string) {
	b, err := os.ReadFile(src)
	if err != nil {
		return
	}
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "\n==== restart, from %s ====\n", filepath.Base(src))
	f.Write(b)
}

type binPaths struct{ apiserver, etcd string }

var (
	binOnce sync.Once
	binVal  binPaths
	binErr  error
)

// binaries runs scripts/kube-binaries.sh once per test process. The script
// returns at once when .cache/bin is up to date and builds otherwise.
func binaries() (binPaths, error) {
	binOnce.Do(func() { binVal, binErr = runBinariesScript() })
	return binVal, binErr
}

func runBinariesScript() (binPaths, error) {
	root, err := repoRoot()
	if err != nil {
		return binPaths{}, err
	}
	script := filepath.Join(root, "scripts", "kube-binaries.sh")
	cmd := exec.Command("bash", script)
	cmd.Dir = root
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	// Build progress (only printed when a build is needed) shows in the test
	// output, since a first build takes minutes.
	cmd.Stderr = io.MultiWriter(&stderr, os.Stderr)
	if err := cmd.Run(); err != nil {
		return binPaths{}, fmt.Errorf("%s failed: %v\n%s", script, err, lastLines(stderr.String(), 40))
	}
	var bp binPaths
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		switch k {
		case "KUBE_APISERVER":
			bp.apiserver = v
		case "ETCD":
			bp.etcd = v
		}
	}
	for name, p := range map[string]string{"kube-apiserver": bp.apiserver, "etcd": bp.etcd} {
		if p == "" {
			return binPaths{}, fmt.Errorf("%s printed no path for %s; stdout:\n%s", script, name, stdout.String())
		}
		if fi, err := os.Stat(p); err != nil || fi.Mode()&0o111 == 0 {
			return binPaths{}, fmt.Errorf("%s: %s is not an executable file (%v)", script, p, err)
		}
	}
	return bp, nil
}

// repoRoot walks up from the working directory (go test runs in the package
// directory) to the directory that holds go.mod and scripts/kube-binaries.sh.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if fileExists(filepath.Join(dir, "go.mod")) && fileExists(filepath.Join(dir, "scripts", "kube-binaries.sh")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no directory with go.mod and scripts/kube-binaries.sh above the working directory")
		}
		dir = parent
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

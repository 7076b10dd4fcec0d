package agent

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// CertFiles serves a TLS certificate from a PEM certificate file and key
// file, reloading them when either changes (a mounted Kubernetes Secret is
// updated in place when cert-manager or an operator rotates it). A reload
// that fails keeps the previous certificate and logs why.
type CertFiles struct {
	certFile, keyFile string
	log               *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   [2]fileStamp
	checked time.Time
}

type fileStamp struct {
	mod  time.Time
	size int64
}

// recheck bounds how often the files are stat'ed (handshakes are rare: the
// plugin keeps its connections alive).
const recheck = 10 * time.Second

// LoadCertFiles reads the pair once; an error names the file and the cause.
func LoadCertFiles(certFile, keyFile string, log *slog.Logger) (*CertFiles, error) {
	if log == nil {
		log = slog.Default()
	}
	c := &CertFiles{certFile: certFile, keyFile: keyFile, log: log}
	cert, stamp, err := c.load()
	if err != nil {
		return nil, err
	}
	c.cert, c.stamp, c.checked = cert, stamp, time.Now()
	return c, nil
}

func (c *CertFiles) load() (*tls.Certificate, [2]fileStamp, error) {
	var stamp [2]fileStamp
	for i, f := range []string{c.certFile, c.keyFile} {
		st, err := os.Stat(f)
		if err != nil {
			return nil, stamp, fmt.Errorf("tls: %w", err)
		}
		stamp[i] = fileStamp{st.ModTime(), st.Size()}
	}
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return nil, stamp, fmt.Errorf("tls: certificate %s / key %s: %w", c.certFile, c.keyFile, err)
	}
	return &cert, stamp, nil
}

// GetCertificate is for tls.Config.
func (c *CertFiles) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.checked) < recheck {
		return c.cert, nil
	}
	c.checked = time.Now()
	changed := false
	for i, f := range []string{c.certFile, c.keyFile} {
		st, err := os.Stat(f)
		if err != nil || (fileStamp{st.ModTime(), st.Size()}) != c.stamp[i] {
			changed = true
		}
	}
	if !changed {
		return c.cert, nil
	}
	cert, stamp, err := c.load()
	if err != nil {
		c.log.Warn("TLS certificate reload failed; serving the previous one", "err", err)
		return c.cert, nil
	}
	c.cert, c.stamp = cert, stamp
	c.log.Info("TLS certificate reloaded", "cert", c.certFile)
	return c.cert, nil
}

// TLSConfig is the server configuration: TLS 1.2 or later, the certificate
// from the files.
func (c *CertFiles) TLSConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: c.GetCertificate}
}

package agent

import (
	"crypto/x509"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/livemap/servicemap/internal/testenv/testcert"
)

// TestCertFilesReload: the served certificate follows the files (a rotated
// Secret); a broken new pair keeps the previous certificate; missing files
// fail the start with the file named.
func TestCertFilesReload(t *testing.T) {
	ca := testcert.NewCA(t, "agents CA")
	certA, keyA := ca.Issue(t, []string{"a.example"}, nil)
	certB, keyB := ca.Issue(t, []string{"b.example"}, []net.IP{net.IPv4(127, 0, 0, 1)})
	certFile, keyFile := testcert.WritePair(t, certA, keyA)
	cf, err := LoadCertFiles(certFile, keyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	served := func() string {
		t.Helper()
		cf.mu.Lock()
		cf.checked = time.Time{} // as if the recheck interval had passed
		cf.mu.Unlock()
		c, err := cf.GetCertificate(nil)
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return strings.Join(leaf.DNSNames, ",")
	}
	if got := served(); got != "a.example" {
		t.Fatalf("served %q, want a.example", got)
	}
	// Rotation: new files (a different size, and a later time).
	later := time.Now().Add(time.Minute)
	for f, b := range map[string][]byte{certFile: certB, keyFile: keyB} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(f, later, later)
	}
	if got := served(); got != "b.example" {
		t.Errorf("after rotation served %q, want b.example", got)
	}
	// A broken certificate file keeps B.
	if err := os.WriteFile(certFile, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := served(); got != "b.example" {
		t.Errorf("after a broken rotation served %q, want the previous b.example", got)
	}
	if _, err := LoadCertFiles(certFile+".missing", keyFile, nil); err == nil || !strings.Contains(err.Error(), ".missing") {
		t.Errorf("missing file: %v", err)
	}
	if _, err := LoadCertFiles(certFile, keyFile, nil); err == nil || !strings.Contains(err.Error(), certFile) {
		t.Errorf("garbage certificate: %v", err)
	}
}

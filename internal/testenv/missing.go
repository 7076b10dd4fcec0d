// Package testenv holds what the test suites share about real parts; the
// parts themselves live in its subpackages (postgres, kubeapi, netns, nginx).
package testenv

import "os"

// RequireRealParts is the environment variable scripts/test.sh sets when it
// runs as root: then every real part can be started, and a missing one is a
// broken set-up, not a reason to skip.
const RequireRealParts = "SERVICEMAP_REQUIRE_REAL_PARTS"

// TB is the part of testing.TB that Missing needs.
type TB interface {
	Helper()
	Skipf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// Missing stops a test that cannot get a real part it needs: it skips when
// run by hand without privileges, and fails under the README's test command
// as root, so a skipped test never counts as passing in CI.
func Missing(t TB, format string, args ...any) {
	t.Helper()
	if os.Getenv(RequireRealParts) == "1" {
		t.Fatalf("real part missing under "+RequireRealParts+"=1: "+format, args...)
	}
	t.Skipf(format, args...)
}

package agent

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/livemap/servicemap/pkg/agent/api"
)

// TestFakeProcRoot runs a poll over a fabricated proc root: two PIDs whose
// ns/net link to this process's namespace (read once), fixture TCP tables
// with malformed lines, snmp/netstat counters and a Kubernetes cgroup.
func TestFakeProcRoot(t *testing.T) {
	root := t.TempDir()
	uid := "1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901"
	cid := strings.Repeat("ab", 32)
	for _, pid := range []string{"300", "301"} {
		dir := filepath.Join(root, pid)
		must(t, os.MkdirAll(filepath.Join(dir, "ns"), 0o755))
		must(t, os.MkdirAll(filepath.Join(dir, "net"), 0o755))
		must(t, os.Symlink("/proc/self/ns/net", filepath.Join(dir, "ns", "net")))
		must(t, os.WriteFile(filepath.Join(dir, "cgroup"), []byte("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"+strings.ReplaceAll(uid, "-", "_")+".slice/cri-containerd-"+cid+".scope\n"), 0o644))
		must(t, os.WriteFile(filepath.Join(dir, "net", "tcp"), []byte(procHeader4+rowListen4+
			"   3: 0100007F:83CD 0100007F:88A0 06 00000000:00000000\n"+ // short
			"   3: 0100007F:83CD 0100007F:88A0 0D 00000000:00000000 00:00000000 00000000 0 0 1 1\n"+ // bad state
			rowEst4+
			"   4: 0203F40A:1F90 0102F40A:DC79 01 00000000:00000000 00:00000000 00000000     0        0 4243 1\n"), 0o644))
		must(t, os.WriteFile(filepath.Join(dir, "net", "tcp6"), []byte(rowEst6[:40]+"\n"+rowLis6), 0o644))
		must(t, os.WriteFile(filepath.Join(dir, "net", "snmp"), []byte("Tcp: ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab\nTcp: 5 9 1 0 2\n"), 0o644))
		must(t, os.WriteFile(filepath.Join(dir, "net", "netstat"), []byte("TcpExt: ListenOverflows ListenDrops\nTcpExt: 3 4\n"), 0o644))
	}
	must(t, os.MkdirAll(filepath.Join(root, "self"), 0o755)) // non-numeric: ignored
	a := New(Config{ProcRoot: root, Method: MethodProc, MaxPIDsPerNamespace: 1})
	s := a.Poll()
	if len(s.Namespaces) != 1 {
		t.Fatalf("namespaces %d", len(s.Namespaces))
	}
	ns := s.Namespaces[0]
	if !reflect.DeepEqual(ns.PIDs, []int{300}) || ns.PIDCount != 2 || ns.PodUID != uid || ns.ContainerID != cid || ns.Method != api.MethodProc {
		t.Errorf("identity: %+v", ns)
	}
	wantErr := map[string]int{ErrProcShortLine: 2, ErrProcBadState: 1}
	if !reflect.DeepEqual(s.Errors, wantErr) || s.Cost.Errors != 3 || s.Cost.PIDsScanned != 2 {
		t.Errorf("errors %v cost %+v", s.Errors, s.Cost)
	}
	got := normConns(ns.Connections)
	// 8080 is not a listen port in the fixture (2024 and 9090 are): outbound.
	want := []string{
		"outbound 10.244.3.2:8080 -> 10.244.2.1:56441 ESTABLISHED",
		"outbound 10.244.3.2:8080 -> 10.244.2.2:56440 ESTABLISHED",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("connections %q want %q", got, want)
	}
	if len(ns.Listeners) != 2 {
		t.Errorf("listeners %+v", ns.Listeners)
	}
	c := ns.Counters
	if !c.Valid || c.ActiveOpens != 5 || c.PassiveOpens != 9 || c.AttemptFails != 1 || c.CurrEstab != 2 || c.ListenOverflows != 3 || c.ListenDrops != 4 || c.Delta != nil {
		t.Errorf("counters %+v", c)
	}
	// Second poll: counters moved, deltas appear.
	for _, pid := range []string{"300", "301"} {
		must(t, os.WriteFile(filepath.Join(root, pid, "net", "snmp"), []byte("Tcp: ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab\nTcp: 8 10 1 0 2\n"), 0o644))
	}
	s2 := a.Poll()
	d := s2.Namespaces[0].Counters.Delta
	if d == nil || d.ActiveOpens != 3 || d.PassiveOpens != 1 || d.UnobservedOpens != 4 {
		t.Errorf("delta %+v", d)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

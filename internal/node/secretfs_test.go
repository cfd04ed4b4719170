package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func mountsOf(t *testing.T, dir string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 && f[4] == dir {
			n++
		}
	}
	return n
}

// Secret files must live in memory: on a host whose /run is on disk the
// node mounts a tmpfs for them, clearing what an earlier start left
// there; on a tmpfs already it mounts nothing; down unmounts it.
func TestSecretFilesAreOnATmpfs(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("mounting a tmpfs needs root; CI=true forbids skipping")
		}
		t.Skip("mounting a tmpfs needs root")
	}
	var st unix.Statfs_t
	base := t.TempDir()
	if err := unix.Statfs(base, &st); err != nil || st.Type == tmpfsMagic {
		t.Skipf("%s is a tmpfs already (or statfs failed: %v): nothing to show here", base, err)
	}
	dir := filepath.Join(base, "secrets", "node-1")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	left := filepath.Join(dir, "left-on-disk")
	if err := os.WriteFile(left, []byte("s3cret"), 0o400); err != nil {
		t.Fatal(err)
	}
	if err := secretFS(dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unmountSecretFS(dir) })
	if err := unix.Statfs(dir, &st); err != nil || st.Type != tmpfsMagic {
		t.Fatalf("after secretFS %s has type %#x (%v), want a tmpfs", dir, st.Type, err)
	}
	if _, err := os.Stat(left); !os.IsNotExist(err) {
		t.Errorf("a file left on disk is still visible: %v", err)
	}
	if err := secretFS(dir); err != nil || mountsOf(t, dir) != 1 {
		t.Fatalf("a second start: %v, %d mounts on %s; want one", err, mountsOf(t, dir), dir)
	}
	if err := unmountSecretFS(dir); err != nil || mountsOf(t, dir) != 0 {
		t.Fatalf("unmount: %v, %d mounts left", err, mountsOf(t, dir))
	}
	if err := unmountSecretFS(dir); err != nil {
		t.Errorf("unmounting a dir that is no mount point: %v", err)
	}
}

package clusterslot

import (
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// A lock file was made with O_EXCL and only then given its maker's pid:
// a second process that looked in between read an empty file, took pid 0
// for "owner gone", removed the lock and claimed the same number (two
// clusters on one bridge, subnet and port block). A number is held by a
// flock now, from the moment its file is opened.
func TestClaimSkipsANumberHeldByAnother(t *testing.T) {
	if err := os.MkdirAll(Dir, 0o755); err != nil {
		t.Skipf("cannot create %s: %v", Dir, err)
	}
	const n = 149
	if _, err := os.Stat("/sys/class/net/gte" + strconv.Itoa(n)); err == nil {
		t.Skipf("bridge gte%d exists", n)
	}
	// Another holder: a lock on its own open file, as another process's.
	other, err := os.OpenFile(filepath.Join(Dir, strconv.Itoa(n)), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(other.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		other.Close()
		t.Skipf("number %d is held by another process here: %v", n, err)
	}
	got, release, err := Claim(n)
	if err != nil {
		t.Fatal(err)
	}
	release()
	if got == n {
		t.Errorf("Claim(%d) took number %d, held by another", n, got)
	}
	other.Close() // its holder exits
	got, release, err = Claim(n)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if got != n {
		t.Errorf("Claim(%d) = %d once its holder was gone; want %d", n, got, n)
	}
}

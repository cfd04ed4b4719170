// Package runtimetest holds what the tests that run a private containerd
// share: a logger, contexts bounded by the test, and the clean-up of what
// containerd, runc and snapshots leave on the host when a test fails.
package runtimetest

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gantry-dev/gantry/internal/logfile"
)

// Main is the TestMain of a package whose tests run containers with the
// test binary as log driver: run with logDriverArg (as the shim runs it),
// the binary is the log driver; otherwise it runs the tests, then
// teardown, and exits.
func Main(m *testing.M, logDriverArg string, teardown func()) {
	if len(os.Args) >= 2 && os.Args[1] == logDriverArg {
		logfile.RunDriver()
		return
	}
	code := m.Run()
	teardown()
	os.Exit(code)
}

// Logger logs at debug level to stderr under go test -v, else nowhere.
func Logger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// Context returns a context that ends with the test or after d.
func Context(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// MountsUnder lists mount points below dir, deepest first.
func MountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			out = append([]string{fields[4]}, out...)
		}
	}
	return out
}

// UnmountUnder lazily unmounts whatever a failed test left mounted below
// dir, deepest first, so the directory can be removed.
func UnmountUnder(dir string) {
	for _, m := range MountsUnder(dir) {
		_ = unix.Unmount(m, unix.MNT_DETACH)
	}
}

// RemoveNamespaceDirs removes what runc makes per containerd namespace
// and leaves behind: the namespace's parent cgroups (if empty) and its
// state directory.
func RemoveNamespaceDirs(namespaces ...string) {
	for _, ns := range namespaces {
		dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", ns))
		for _, d := range dirs {
			_ = os.Remove(d)
		}
		_ = os.Remove(filepath.Join("/sys/fs/cgroup", ns))
		_ = os.Remove(filepath.Join("/run/containerd/runc", ns))
	}
}

// Require32Bit skips t when this kernel cannot execute the i386 program
// at bin: some VM kernels run without IA-32 emulation, and there is then
// no 32-bit program for the seccomp filter to stop or admit. The program
// is killed at once if it starts.
func Require32Bit(t testing.TB, bin string) {
	t.Helper()
	cmd := exec.Command(bin)
	err := cmd.Start()
	if errors.Is(err, syscall.ENOEXEC) {
		t.Skipf("this kernel cannot run 32-bit programs (%v); the 32-bit ABI checks need IA-32 emulation", err)
	}
	if err != nil {
		t.Fatalf("start the i386 program %s: %v", bin, err)
	}
	cmd.Process.Kill()
	cmd.Wait()
}

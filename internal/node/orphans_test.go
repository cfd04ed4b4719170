package node

import (
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// startFakeShim starts a shell named like a containerd shim serving
// address, with a child of its own standing for the log driver.
func startFakeShim(t *testing.T, address string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", "sleep 60 & wait", "-address", address)
	cmd.Args[0] = "containerd-shim-runc-v2" // what the shim's cmdline starts with
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd
}

func TestKillOrphanShims(t *testing.T) {
	dir := t.TempDir()
	ours := filepath.Join(dir, "a", "containerd.sock")
	other := filepath.Join(dir, "b", "containerd.sock")
	shim := startFakeShim(t, ours)
	keep := startFakeShim(t, other)

	var child int
	deadline := time.Now().Add(5 * time.Second)
	for child == 0 {
		procs, err := listProcs()
		if err != nil {
			t.Fatal(err)
		}
		for pid, p := range procs {
			if p.ppid == shim.Process.Pid {
				child = pid
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the fake shim's child did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}

	n, err := killOrphanShims(ours)
	if err != nil || n != 1 {
		t.Fatalf("killOrphanShims = %d, %v; want 1 shim, no error", n, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- shim.Wait() }()
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Fatal("the shim of the socket still runs")
	}
	// The child, reparented once its shim died, must be gone too: no
	// process, or a zombie until its new parent reaps it.
	deadline = time.Now().Add(5 * time.Second)
	for st := procState(child); st != 0 && st != 'Z'; st = procState(child) {
		if time.Now().After(deadline) {
			t.Fatalf("the shim's child %d still runs (state %c)", child, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := syscall.Kill(keep.Process.Pid, 0); err != nil {
		t.Fatalf("the shim of another containerd was hit: %v", err)
	}
	if n, err := killOrphanShims(ours); err != nil || n != 0 {
		t.Fatalf("second call = %d, %v; want nothing found", n, err)
	}
}

func TestIsShimOf(t *testing.T) {
	for _, tt := range []struct {
		argv []string
		want bool
	}{
		{[]string{"/usr/bin/containerd-shim-runc-v2", "-namespace", "gantry", "-id", "x", "-address", "/s.sock"}, true},
		{[]string{"containerd-shim-runc-v2", "-address", "/other.sock"}, false},
		{[]string{"/usr/bin/containerd", "-address", "/s.sock"}, false},
		{[]string{"containerd-shim-runc-v2", "-address"}, false},
		{[]string{""}, false},
		{nil, false},
	} {
		if got := isShimOf(tt.argv, "/s.sock"); got != tt.want {
			t.Errorf("isShimOf(%q) = %v, want %v", tt.argv, got, tt.want)
		}
	}
}

// procState is the state letter of process pid, or 0 if there is none.
func procState(pid int) byte {
	st, _, err := procStat(pid)
	if err != nil {
		return 0
	}
	return st
}

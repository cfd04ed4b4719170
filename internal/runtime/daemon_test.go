package runtime

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/runtime/runtimetest"
)

// daemonDir returns a directory for a private containerd, removed (after
// unmounting what is left in it) when the test ends.
func daemonDir(t *testing.T, long bool) string {
	t.Helper()
	top, err := os.MkdirTemp("", "gtrd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		runtimetest.UnmountUnder(top)
		os.RemoveAll(top)
	})
	dir := top
	if long {
		// Long enough that the socket cannot live inside it.
		dir = filepath.Join(dir, strings.Repeat("d", 60), strings.Repeat("e", 60))
	}
	return dir
}

func startDaemon(t *testing.T, dir string) *Daemon {
	t.Helper()
	d, err := StartDaemon(ctxT(t, 60*time.Second), DaemonConfig{Dir: dir}, testLogger())
	if err != nil {
		t.Fatalf("StartDaemon: %v", err)
	}
	return d
}

func TestDaemonAdoptsTheContainerdOfItsDirectory(t *testing.T) {
	testEnv(t) // root and containerd checks
	dir := daemonDir(t, true)
	d1 := startDaemon(t, dir)
	t.Cleanup(func() { d1.Stop() })
	if !strings.HasPrefix(d1.Address(), "/run/gantry/") {
		t.Fatalf("socket %s for a long directory", d1.Address())
	}

	// A second StartDaemon (an agent restarted after kill -9) adopts it.
	d2 := startDaemon(t, dir)
	if d2.Pid() != d1.Pid() {
		t.Fatalf("second start spawned pid %d instead of adopting %d", d2.Pid(), d1.Pid())
	}
	if n := processesMatching(filepath.Join(dir, "containerd.toml")); n != 1 {
		t.Fatalf("%d containerd processes for one directory", n)
	}
	if err := ping(ctxT(t, 5*time.Second), d2.Address()); err != nil {
		t.Fatalf("adopted daemon does not answer: %v", err)
	}

	// It is adopted even when the pidfile is gone.
	if err := os.Remove(filepath.Join(dir, "containerd.pid")); err != nil {
		t.Fatal(err)
	}
	if d3 := startDaemon(t, dir); d3.Pid() != d1.Pid() {
		t.Fatalf("without a pidfile, spawned %d instead of adopting %d", d3.Pid(), d1.Pid())
	}

	pid := d2.Pid()
	if err := d2.Stop(); err != nil {
		t.Fatal(err)
	}
	if processAlive(pid) {
		t.Fatal("containerd still runs after Stop")
	}
	for _, f := range []string{filepath.Join(dir, "containerd.pid"), d2.Address(), d2.Address() + ".ttrpc"} {
		if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s left after Stop", f)
		}
	}

	// After a crash (stale pidfile and sockets), a new daemon starts.
	if err := os.WriteFile(filepath.Join(dir, "containerd.pid"), []byte("999999\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d4 := startDaemon(t, dir)
	t.Cleanup(func() { d4.Stop() })
	if d4.Pid() == pid || d4.Pid() == 0 {
		t.Fatalf("restart after a crash: pid %d", d4.Pid())
	}
}

func TestDaemonFailsClearlyWithABadBinary(t *testing.T) {
	dir := t.TempDir()
	_, err := StartDaemon(ctxT(t, 10*time.Second), DaemonConfig{Dir: dir, Binary: "/nonexistent/containerd"}, nil)
	if err == nil || !strings.Contains(err.Error(), "containerd package") {
		t.Fatalf("err = %v", err)
	}
	_, err = StartDaemon(ctxT(t, 10*time.Second), DaemonConfig{Dir: t.TempDir(), Binary: "/bin/false", ReadyTimeout: 5 * time.Second}, nil)
	if err == nil || !strings.Contains(err.Error(), "exited during startup") {
		t.Fatalf("err = %v", err)
	}
}

func TestDaemonRestartKeepsContainersRunning(t *testing.T) {
	e := testEnv(t)
	daemon := startDaemon(t, daemonDir(t, false))
	t.Cleanup(func() { daemon.Stop() })
	ctx := ctxT(t, 2*time.Minute)
	exe, _ := os.Executable()
	d, err := New(ctx, Config{Address: daemon.Address(), Namespace: testNamespace, LogDriver: []string{exe, logDriverArg}}, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	s := &ContainerSpec{
		ID:      newID(t),
		Image:   e.busybox,
		Command: []string{"sh", "-c", "while true; do echo tick; sleep 0.1; done"},
		LogPath: filepath.Join(t.TempDir(), "log"),
	}
	if err := d.Create(ctx, s); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Remove(context.Background(), s.ID); err != nil {
			t.Errorf("Remove: %v", err)
		}
	})
	pid, err := d.Start(ctx, s.ID)
	if err != nil {
		t.Fatal(err)
	}
	waitBefore, err := d.Wait(ctx, s.ID)
	if err != nil {
		t.Fatal(err)
	}

	// Supervise through a second Daemon that adopted the running one, as
	// an agent restarted after a kill -9 would: it watches a process that
	// is not its child.
	spawned := daemon
	daemon = startDaemon(t, spawned.cfg.Dir)
	if daemon.Pid() != spawned.Pid() {
		t.Fatalf("not adopted: %d vs %d", daemon.Pid(), spawned.Pid())
	}
	restarted := make(chan struct{}, 4)
	superviseCtx, stopSupervise := context.WithCancel(ctx)
	supervised := make(chan error, 1)
	go func() { supervised <- daemon.Supervise(superviseCtx, func() { restarted <- struct{}{} }) }()
	t.Cleanup(func() {
		stopSupervise()
		<-supervised
	})

	oldPid := daemon.Pid()
	if err := syscall.Kill(oldPid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-restarted:
	case <-time.After(30 * time.Second):
		t.Fatal("containerd was not restarted")
	}
	if daemon.Pid() == oldPid || !processAlive(daemon.Pid()) {
		t.Fatalf("after restart: pid %d (was %d)", daemon.Pid(), oldPid)
	}

	// The wait that was open when containerd died reports the break, not
	// an exit.
	select {
	case ex := <-waitBefore:
		if ex.Err == nil {
			t.Fatalf("a broken wait reported an exit: %+v", ex)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the wait open during the crash never returned")
	}

	// The container ran on in its shim, and the driver reaches it again
	// once the client has reconnected.
	if !processAlive(int(pid)) {
		t.Fatal("the container died with containerd")
	}
	waitReachable(t, d, s.ID)
	c, err := d.Inspect(ctx, s.ID)
	if err != nil || c.Status != StatusRunning || c.Pid != pid {
		t.Fatalf("after restart: %+v, %v (pid was %d)", c, err, pid)
	}
	ticks := len(logLines(t, s.LogPath, 0))
	if got := len(logLines(t, s.LogPath, ticks+3)); got <= ticks {
		t.Fatal("the log stopped growing across the restart")
	}
	waitAfter, err := d.Wait(ctx, s.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(int(pid), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case ex := <-waitAfter:
		if ex.Err != nil || ex.Code != 137 {
			t.Fatalf("exit after restart: %+v", ex)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Wait after the restart did not report the exit")
	}

	// Stop ends supervision: the daemon is not restarted again.
	if err := daemon.Stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-supervised:
		if err != nil {
			t.Fatalf("Supervise after Stop: %v", err)
		}
		supervised <- nil // for the cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("Supervise did not return after Stop")
	}
	select {
	case <-restarted:
		t.Fatal("restarted after Stop")
	default:
	}
	// Bring it back for the cleanup's Remove (the first cleanup stops
	// whatever daemon the variable holds).
	daemon = startDaemon(t, daemon.cfg.Dir)
	waitReachable(t, d, s.ID)
}

// waitReachable waits until the driver's client has reconnected to a
// restarted containerd.
func waitReachable(t *testing.T, d *Driver, id string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := d.Inspect(ctxT(t, 5*time.Second), id)
		if !errors.Is(err, v1.ErrUnavailable) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd not reachable again: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestHardOpenFiles(t *testing.T) {
	const head = "Limit                     Soft Limit           Hard Limit           Units     \n"
	for _, tc := range []struct {
		text string
		want uint64
	}{
		{head + "Max cpu time              unlimited            unlimited            seconds   \nMax open files            1024                 524288               files     \n", 524288},
		{head + "Max open files            unlimited            unlimited            files     \n", 0},
		{head + "Max processes             63704                63704                processes \n", 0},
		{"", 0},
		{"Max open files 12\n", 0},
	} {
		if got := hardOpenFiles(tc.text); got != tc.want {
			t.Errorf("hardOpenFiles(%q) = %d, want %d", tc.text, got, tc.want)
		}
	}
}

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
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// lostWait is what containerd's client gets when the Wait stream breaks
// because containerd restarts (the shim keeps the process running).
func lostWait() error { return status.Error(codes.Unavailable, "error reading from server: EOF") }

// Sanity of the fake: SIGTERM, exit within grace, no SIGKILL, task deleted.
func TestFakeTaskStops(t *testing.T) {
	ft := newFakeTasks()
	ft.termExitAfter, ft.killExitAfter = 100*time.Millisecond, 0
	d := fakeDriver(t, ft)
	if err := d.Stop(context.Background(), "c1", 2*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, s := range ft.signals() {
		if s.sig == syscall.SIGKILL {
			t.Fatalf("SIGKILL sent: %+v", ft.signals())
		}
	}
	if !ft.proc("").deleted {
		t.Fatal("task not deleted")
	}
}

// The wait on the task breaks (containerd restarted under the shim, which
// kept the process) while the process is in its grace period: Stop sent
// SIGKILL at once instead of waiting the rest of the grace, and then read
// the wait channel again, which was closed: a zero ExitStatus (no error)
// taken for "exited", so Delete ran against a task still running. It
// waits again now.
func TestStopKeepsTheGraceWhenTheWaitBreaks(t *testing.T) {
	ft := newFakeTasks()
	ft.termExitAfter = 300 * time.Millisecond // exits cleanly well within grace
	ft.killExitAfter = 200 * time.Millisecond // the kernel/shim reports a SIGKILL exit a bit later
	ft.waitErrs[""] = []error{lostWait()}
	d := fakeDriver(t, ft)
	err := d.Stop(context.Background(), "c1", 2*time.Second)
	for _, s := range ft.signals() {
		if s.sig == syscall.SIGKILL {
			t.Errorf("SIGKILL sent %v after the start of a 2s grace period (the process would have exited on SIGTERM after 300ms)", s.at.Round(time.Millisecond))
		}
	}
	if err != nil {
		t.Errorf("Stop: %v", err)
	}
}

// With grace 0 (Remove, or Stop(0)) a wait broken by a containerd restart
// came back as a raw gRPC error, not v1.ErrUnavailable: the agent's
// retry(…, isUnavailable) around Stop gave up instead of waiting for
// containerd. A wait that keeps breaking is v1.ErrUnavailable now.
func TestStopWithAWaitThatKeepsBreakingIsUnavailable(t *testing.T) {
	ft := newFakeTasks()
	ft.killExitAfter = -1
	ft.waitErrs[""] = lostWaits(25)
	d := fakeDriver(t, ft)
	err := d.Stop(context.Background(), "c1", 0)
	if err == nil || !errors.Is(err, v1.ErrUnavailable) {
		t.Errorf("Stop with a broken wait = %v; want an error wrapping v1.ErrUnavailable", err)
	}
}

// Wait's Exit.Err for a wait broken by a containerd restart did not wrap
// v1.ErrUnavailable (task.Wait returns the raw gRPC status, which kindOf
// did not convert).
func TestWaitBrokenByARestartIsUnavailable(t *testing.T) {
	ft := newFakeTasks()
	ft.waitErrs[""] = []error{lostWait()}
	d := fakeDriver(t, ft)
	ch, err := d.Wait(context.Background(), "c1")
	if err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-ch:
		if e.Err == nil || !errors.Is(e.Err, v1.ErrUnavailable) {
			t.Errorf("Exit after a broken wait = %+v; want Err wrapping v1.ErrUnavailable", e)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no exit")
	}
}

// An exec whose wait broke (containerd restarted during `gantry exec`)
// made Exec return an error while the process still ran; the deferred
// Delete failed (process running) and nothing killed it: the exec process
// and its IO (FIFOs, copy goroutines) were leaked for good. A wait that
// breaks is made again; one that keeps breaking ends the process.
func TestExecIsNotLeakedWhenItsWaitKeepsBreaking(t *testing.T) {
	ft := newFakeTasks()
	ft.killExitAfter = 10 * time.Millisecond
	ft.waitErrs["exec"] = lostWaits(25)
	d := fakeDriver(t, ft)
	_, err := d.Exec(context.Background(), "c1", ExecOptions{Cmd: []string{"sh"}})
	if err == nil {
		t.Fatal("Exec succeeded")
	}
	var execID string
	ft.mu.Lock()
	for id := range ft.procs {
		if id != "" {
			execID = id
		}
	}
	p := ft.procs[execID]
	deleted, running := p.deleted, p.status.String()
	ft.mu.Unlock()
	t.Cleanup(func() { removeExecFIFOs(execID) })
	killed := false
	for _, s := range ft.signals() {
		if s.execID == execID {
			killed = true
		}
	}
	if !deleted || !killed {
		t.Errorf("after Exec returned %v: exec %s is %s, killed=%v, deleted=%v; want killed and deleted", err, execID, running, killed, deleted)
	}
}

func removeExecFIFOs(execID string) {
	if execID == "" {
		return
	}
	dirs, _ := filepath.Glob("/run/containerd/fifo/*")
	for _, dir := range dirs {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), execID+"-") {
				os.RemoveAll(dir)
				break
			}
		}
	}
}

// An exec probe's verdict is "none" when Exec fails with v1.ErrUnavailable
// (agent/probe.go), but an exec whose wait broke in a containerd restart
// failed with the raw gRPC error: the probe counted a failure.
func TestExecWithAWaitThatKeepsBreakingIsUnavailable(t *testing.T) {
	ft := newFakeTasks()
	ft.killExitAfter = 10 * time.Millisecond
	ft.waitErrs["exec"] = lostWaits(25)
	d := fakeDriver(t, ft)
	_, err := d.Exec(context.Background(), "c1", ExecOptions{Cmd: []string{"true"}})
	ft.mu.Lock()
	for id := range ft.procs {
		defer removeExecFIFOs(id)
	}
	ft.mu.Unlock()
	if !errors.Is(err, v1.ErrUnavailable) {
		t.Errorf("Exec with a broken wait = %v; want an error wrapping v1.ErrUnavailable", err)
	}
}

// lostWaits are n waits broken by containerd going away.
func lostWaits(n int) []error {
	out := make([]error, n)
	for i := range out {
		out[i] = lostWait()
	}
	return out
}

package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// `gantry agent` keeps its node under $GANTRY_HOME/agent by default, and
// `gantry down` takes that node down too: before, it looked only in
// $GANTRY_HOME/node and $GANTRY_HOME, said "gantry is down", and --purge
// deleted the agent's directory (identity key, containerd root) under a
// node it never took down.
func TestDownTakesTheAgentsNodeDown(t *testing.T) {
	agentDir := agentHome(t)
	// A node.json whose containerd cannot be reached: Down would fail on it
	// (rather than silently succeed) if it looked there.
	os.WriteFile(filepath.Join(agentDir, "node.json"), []byte(`{"containerdSocket":"/nonexistent/review.sock"}`), 0o600)
	os.WriteFile(filepath.Join(agentDir, "identity.json"), []byte(`{}`), 0o600)
	out, err := downPurge()
	if _, statErr := os.Stat(agentDir); err == nil || os.IsNotExist(statErr) {
		t.Fatalf("down --purge with the agent's containerd unreachable: %v (%q), %s exists: %v; want an error and the directory kept", err, out, agentDir, statErr == nil)
	}
}

// While gantry agent runs (its pid file names a live gantry process),
// gantry down refuses, as it does for gantry up.
func TestDownRefusesWhileTheAgentRuns(t *testing.T) {
	agentDir := agentHome(t)
	// A process whose command line names gantry stands for the running
	// agent (not this one: a pid file naming the reader itself is a
	// stale one, left by a gantry that died and whose pid it got).
	// The shell must outlive sleep: given a lone command, dash may exec
	// it in its own place, and the command line then no longer names
	// gantry.
	agent := exec.Command("sh", "-c", "sleep 60; exit 0", "gantry-agent")
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agent.Process.Kill(); agent.Wait() })
	// Start returns before the child has become the shell: until then its
	// command line is empty or this test's, and the test failed when down
	// read it in that moment.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", agent.Process.Pid))
		if strings.Contains(string(b), "gantry-agent") || time.Now().After(deadline) {
			break
		}
	}
	os.WriteFile(filepath.Join(agentDir, "gantry.pid"), []byte(fmt.Sprintf("%d\n", agent.Process.Pid)), 0o600)
	_, err := downPurge()
	if err == nil || !strings.Contains(err.Error(), "gantry agent is still running") {
		t.Fatalf("down while the agent runs: %v; want a refusal", err)
	}
	if _, err := os.Stat(agentDir); err != nil {
		t.Errorf("the agent's directory is gone: %v", err)
	}
}

// agentHome makes a GANTRY_HOME with the agent's default data directory
// in it, and returns that directory.
func agentHome(t *testing.T) string {
	t.Helper()
	home := t.TempDir()
	t.Setenv("GANTRY_HOME", home)
	dir := filepath.Join(home, "agent")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}

// downPurge runs gantry down --purge and returns what it printed.
func downPurge() (string, error) {
	cmd := newDownCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs([]string{"--purge"})
	err := cmd.Execute()
	return out.String(), err
}

// down looked only at the pid file, which gantry up writes once its
// server has started: a down --purge during a slow start (embedded etcd)
// deleted the data from under it. The lock the server takes at its first
// step is checked (and held) now. Pointed at a directory where no node
// ran, down said "gantry is down" having removed nothing; it says so.
func TestDownChecksTheServersLockAndSaysWhenNothingRan(t *testing.T) {
	home := t.TempDir()
	run := func(args ...string) (string, error) {
		cmd := newDownCmd()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs(append([]string{"--data-dir", home}, args...))
		err := cmd.Execute()
		return out.String(), err
	}
	out, err := run()
	if err != nil || strings.Contains(out, "gantry is down") || !strings.Contains(out, "nothing taken down") {
		t.Errorf("down where no node ran: %v %q, want it to say nothing was taken down", err, out)
	}
	// A server starting: it holds DATA/gantry.lock, and has no pid file
	// yet.
	os.MkdirAll(filepath.Join(home, "etcd"), 0o700)
	f, err := os.OpenFile(filepath.Join(home, "gantry.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	out, err = run("--purge")
	if err == nil || !strings.Contains(err.Error(), "maybe still starting") {
		t.Errorf("down --purge while a server holds the lock: %v %q, want a refusal", err, out)
	}
	if _, err := os.Stat(filepath.Join(home, "etcd")); err != nil {
		t.Errorf("the data went while a server was starting: %v", err)
	}
	f.Close()
	if _, err := run("--purge"); err != nil {
		t.Errorf("down --purge once the server is gone: %v", err)
	}
}

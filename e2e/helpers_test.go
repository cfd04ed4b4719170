package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/client"
)

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// webapp returns a manifest of the test web app.
func webapp(name, ns, version string, replicas int, extra string) string {
	return fmt.Sprintf(`kind: App
name: %s
namespace: %s
image: webapp:v1
env: {VERSION: %q}
replicas: %d
resources: {cpu: 10m, memory: 32Mi}
ports: [{name: http, port: 8080}]
health:
  readiness: {http: {path: /healthz, port: 8080}, period: 200ms}
strategy: {drainDelay: 300ms}
stopGracePeriod: 2s
%s`, name, ns, version, replicas, extra)
}

// apply applies a manifest through the CLI.
func (c *Cluster) apply(manifest string) {
	c.t.Helper()
	c.MustGantry(manifest, "apply", "-f", "-")
}

// waitRunning waits until the app has n instances, all Running and ready.
func (c *Cluster) waitRunning(ns, app string, n int, timeout time.Duration) []*v1.Instance {
	c.t.Helper()
	var insts []*v1.Instance
	ok := func() bool {
		insts = c.Instances(ns, app)
		if len(insts) != n {
			return false
		}
		for _, i := range insts {
			if i.Status.Phase != v1.PhaseRunning || !i.Status.Ready || i.Metadata.Deleting != nil {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			var b strings.Builder
			for _, i := range insts {
				fmt.Fprintf(&b, "\n  %s phase=%s ready=%v deleting=%v restarts=%d reason=%s message=%q", i.Metadata.Name, i.Status.Phase, i.Status.Ready, i.Metadata.Deleting != nil, i.Status.Restarts, i.Status.Reason, i.Status.Message)
			}
			c.t.Fatalf("timed out after %s waiting for %d ready instances of %s; have:%s", timeout, n, app, b.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return insts
}

// mainPID finds the host pid of an instance's main process from its
// environment (every container gets GANTRY_INSTANCE).
func mainPID(t *testing.T, instance string) int {
	t.Helper()
	want := "GANTRY_INSTANCE=" + instance
	entries, _ := os.ReadDir("/proc")
	best := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || !strings.Contains(string(env), want) {
			continue
		}
		// The main process is the oldest (lowest pid) in the container;
		// execs come later.
		if best == 0 || pid < best {
			best = pid
		}
	}
	if best == 0 {
		t.Fatalf("no process of instance %s found", instance)
	}
	return best
}

// logDriverOf returns the program of the log driver process that writes
// an instance's log file, or "" if none runs.
func logDriverOf(instance string) string {
	want := "/" + instance + ".log"
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if len(args) > 0 && strings.Contains(args[len(args)-1], want) && strings.Contains(args[len(args)-1], `"path"`) {
			return args[0]
		}
	}
	return ""
}

func getApp(t *testing.T, c *Cluster, ns, name string) *v1.App {
	t.Helper()
	a, err := client.Get[*v1.App](context.Background(), c.Client, ns, name)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

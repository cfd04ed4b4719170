package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/client"
	"github.com/gantry-dev/gantry/internal/runtime"
	"github.com/gantry-dev/gantry/internal/runtime/runtimetest"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/namespaces"
)

// activeSnapshots counts the writable snapshots containerd holds for
// Gantry (one per container).
func activeSnapshots(t *testing.T, sock string) int {
	t.Helper()
	cli, err := containerd.New(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx := namespaces.WithNamespace(context.Background(), runtime.DefaultNamespace)
	n := 0
	err = cli.SnapshotService(runtime.DefaultSnapshotter).Walk(ctx, func(ctx context.Context, info snapshots.Info) error {
		if info.Kind == snapshots.KindActive {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRunContainers covers issue 3 on one cluster: replicas with their own
// IPs serving HTTP, restart in place after kill -9, scaling, liveness
// restarts, a missing image, and instances that do not fit.
func TestRunContainers(t *testing.T) {
	c := StartCluster(t, ClusterOptions{})
	c.Push(WebappImage(t), "default/webapp:v1")

	t.Run("three replicas run with distinct IPs and answer HTTP from the host", func(t *testing.T) {
		c.apply(webapp("web", "default", "v1", 3, ""))
		insts := c.waitRunning("default", "web", 3, 60*time.Second)
		ips := map[string]bool{}
		for _, i := range insts {
			if ips[i.Status.IP] {
				t.Fatalf("IP %s used twice", i.Status.IP)
			}
			ips[i.Status.IP] = true
			code, body, err := HTTPGet("http://"+i.Status.IP+":8080/", "")
			if err != nil || code != 200 || !strings.Contains(body, "instance="+i.Metadata.Name) {
				t.Fatalf("GET %s: %d %q %v", i.Status.IP, code, body, err)
			}
			// The shim runs the small gantry-logdriver that lies next to
			// gantry, not gantry itself (ADR 0007).
			if drv := logDriverOf(i.Metadata.Name); filepath.Base(drv) != "gantry-logdriver" {
				t.Fatalf("log driver of %s is %q, want gantry-logdriver", i.Metadata.Name, drv)
			}
		}
	})

	t.Run("kill -9 of the main process is restarted in place within 2s", func(t *testing.T) {
		inst := c.Instances("default", "web")[0]
		pid := mainPID(t, inst.Metadata.Name)
		killed := time.Now()
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		Eventually(t, 5*time.Second, "restart", func() bool {
			i, err := client.Get[*v1.Instance](context.Background(), c.Client, "default", inst.Metadata.Name)
			if err != nil || i.Status.Restarts != 1 || i.Status.Phase != v1.PhaseRunning {
				return false
			}
			code, _, err := HTTPGet("http://"+i.Status.IP+":8080/healthz", "")
			return err == nil && code == 200
		})
		if d := time.Since(killed); d > 2*time.Second {
			t.Fatalf("serving again after %s, want under 2s", d)
		}
		t.Logf("serving again %s after kill -9", time.Since(killed).Round(time.Millisecond))
	})

	t.Run("scale 3 to 5 to 1", func(t *testing.T) {
		c.MustGantry("", "scale", "app/web", "--replicas", "5")
		c.waitRunning("default", "web", 5, 60*time.Second)
		c.MustGantry("", "scale", "app/web", "--replicas", "1")
		c.waitRunning("default", "web", 1, 60*time.Second)
	})

	t.Run("a failing liveness check restarts the instance", func(t *testing.T) {
		c.apply(`kind: App
name: sick
image: webapp:v1
resources: {cpu: 10m, memory: 32Mi}
health:
  liveness: {http: {path: /healthz, port: 8080}, period: 200ms, failureThreshold: 2}
stopGracePeriod: 1s
`)
		Eventually(t, 30*time.Second, "sick running", func() bool {
			l := c.Instances("default", "sick")
			return len(l) == 1 && l[0].Status.Phase == v1.PhaseRunning && l[0].Status.IP != ""
		})
		// /sick makes /healthz fail from then on. Running means the
		// process started, not that it listens yet (the App has no
		// readiness check): ask until it answers.
		ip := c.Instances("default", "sick")[0].Status.IP
		Eventually(t, 10*time.Second, "GET /sick answered", func() bool {
			code, _, err := HTTPGet("http://"+ip+":8080/sick", "")
			return err == nil && code == 200
		})
		Eventually(t, 30*time.Second, "a liveness restart", func() bool {
			l := c.Instances("default", "sick")
			return len(l) == 1 && l[0].Status.Restarts >= 1
		})
		// And it runs again (a stop cut short left containerd with the
		// task, and no start ever succeeded again). It fails again: the
		// /tmp/unready that /sick wrote stays in the container's files.
		Eventually(t, 30*time.Second, "sick running again after a restart", func() bool {
			l := c.Instances("default", "sick")
			return len(l) == 1 && l[0].Status.Restarts >= 1 && l[0].Status.Phase == v1.PhaseRunning && l[0].Status.Reason != "StartFailed"
		})
		ev := c.MustGantry("", "events")
		if !strings.Contains(ev, "liveness check failed") {
			t.Errorf("no liveness event:\n%s", ev)
		}
	})

	t.Run("a container that keeps crashing is restarted with a growing back-off", func(t *testing.T) {
		// PORT=x makes webapp exit at once: it cannot listen there.
		c.apply("kind: App\nname: crasher\nimage: webapp:v1\nenv: {PORT: x}\nresources: {cpu: 10m, memory: 32Mi}\n")
		Eventually(t, 30*time.Second, "crasher in back-off", func() bool {
			l := c.Instances("default", "crasher")
			return len(l) == 1 && l[0].Status.Phase == v1.PhaseBackOff
		})
		first := c.Instances("default", "crasher")[0].Status.Restarts
		time.Sleep(8 * time.Second)
		// Restarts at once, then after 1, 2, 4, 8 s: a handful in 8 s,
		// not one for each status write (dozens, before the fix).
		l := c.Instances("default", "crasher")
		if len(l) != 1 {
			t.Fatalf("%d crasher instances, want 1", len(l))
		}
		if n := l[0].Status.Restarts - first; n > 4 {
			t.Errorf("%d restarts in 8 s of back-off (from %d); want at most 4", n, first)
		}
		c.MustGantry("", "delete", "app", "crasher")
	})

	t.Run("a missing image shows a clear error, not a hang", func(t *testing.T) {
		c.apply("kind: App\nname: ghost\nimage: nosuch:v9\n")
		Eventually(t, 30*time.Second, "pull error in status", func() bool {
			l := c.Instances("default", "ghost")
			return len(l) == 1 && strings.Contains(l[0].Status.Message, "not found") && l[0].Status.Reason == "ErrImagePull"
		})
		ev := c.MustGantry("", "events")
		if !strings.Contains(ev, "ErrImagePull") {
			t.Errorf("no ErrImagePull event:\n%s", ev)
		}
		c.MustGantry("", "delete", "app", "ghost")
	})

	t.Run("a 32-bit program is stopped with the setting to use, and runs with it", func(t *testing.T) {
		runtimetest.Require32Bit(t, webapp386Bin)
		defer c.Gantry("", "delete", "app", "old32")
		c.Push(Webapp386Image(t), "default/webapp386:v1")
		const app = "kind: App\nname: old32\nimage: webapp386:v1\nresources: {cpu: 10m, memory: 32Mi}\n"
		c.apply(app + "restartPolicy: never\n")
		Eventually(t, 30*time.Second, "BadSyscall with the fix in status", func() bool {
			l := c.Instances("default", "old32")
			return len(l) == 1 && l[0].Status.Reason == "BadSyscall" &&
				strings.Contains(l[0].Status.Message, "securityContext.allow32Bit: true")
		})
		c.apply(app + "securityContext: {allow32Bit: true}\n")
		var ip string
		Eventually(t, 30*time.Second, "old32 running with allow32Bit", func() bool {
			l := c.Instances("default", "old32")
			if len(l) != 1 || l[0].Status.Phase != v1.PhaseRunning || l[0].Status.IP == "" {
				return false
			}
			ip = l[0].Status.IP
			return true
		})
		Eventually(t, 10*time.Second, "the i386 web app answering", func() bool {
			code, _, err := HTTPGet("http://"+ip+":8080/healthz", "")
			return err == nil && code == 200
		})
	})

	t.Run("replicas that do not fit in memory stay Pending with the reason", func(t *testing.T) {
		for _, app := range []string{"web", "sick", "ghost", "old32"} {
			c.Gantry("", "delete", "app", app)
		}
		Eventually(t, 60*time.Second, "earlier apps gone", func() bool {
			l, _, err := client.List[*v1.Instance](context.Background(), c.Client, "default", client.ListOptions{})
			return err == nil && len(l) == 0
		})
		n, err := client.Get[*v1.Node](context.Background(), c.Client, "", c.Node)
		if err != nil {
			t.Fatal(err)
		}
		// Three fit, the fourth does not.
		per := (n.Status.Allocatable.Memory - 64<<20) / 3
		c.apply(fmt.Sprintf("kind: App\nname: big\nimage: webapp:v1\nreplicas: 4\nresources: {cpu: 10m, memory: %d}\n", int64(per)))
		Eventually(t, 60*time.Second, "3 running and 1 pending", func() bool {
			running, pending := 0, 0
			for _, i := range c.Instances("default", "big") {
				switch {
				case i.Status.Phase == v1.PhaseRunning:
					running++
				case i.Status.Phase == v1.PhasePending && i.Status.Reason == "Unschedulable" && strings.Contains(i.Status.Message, "memory"):
					pending++
				}
			}
			return running == 3 && pending == 1
		})
		c.MustGantry("", "delete", "app", "big")
	})
}

// containerdState counts what a node holds in containerd, IPAM and netns,
// to prove that deletes leave nothing behind.
func containerdState(t *testing.T, c *Cluster) (containers, snapshots, ips, netns int) {
	t.Helper()
	ctx := context.Background()
	drv, err := runtime.New(ctx, runtime.Config{Address: runtime.SocketPath(filepath.Join(c.Dir, "node", "containerd"))}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer drv.Close()
	cs, err := drv.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	snaps := activeSnapshots(t, runtime.SocketPath(filepath.Join(c.Dir, "node", "containerd")))
	ipam, _ := filepath.Glob(filepath.Join(c.Dir, "node", "net", "ipam", "*", "*.*.*.*"))
	ns, _ := os.ReadDir(filepath.Join(c.Dir, "netns"))
	return len(cs), snaps, len(ipam), len(ns)
}

// TestDeployDeleteCyclesLeaveNothing runs 50 deploy/delete cycles and
// counts containers, snapshots, IP reservations and netns left.
func TestDeployDeleteCyclesLeaveNothing(t *testing.T) {
	c := StartCluster(t, ClusterOptions{})
	c.Push(WebappImage(t), "default/webapp:v1")
	ctx := context.Background()
	for i := 0; i < 50; i++ {
		name := fmt.Sprintf("cycle-%d", i)
		c.apply(webapp(name, "default", "v1", 1, ""))
		c.waitRunning("default", name, 1, 30*time.Second)
		if _, err := c.Client.Delete(ctx, "App", "default", name); err != nil {
			t.Fatal(err)
		}
	}
	Eventually(t, 60*time.Second, "every instance gone", func() bool {
		l, _, err := client.List[*v1.Instance](ctx, c.Client, "default", client.ListOptions{})
		return err == nil && len(l) == 0
	})
	Eventually(t, 30*time.Second, "nothing left behind", func() bool {
		cs, snaps, ips, ns := containerdState(t, c)
		if cs+snaps+ips+ns != 0 {
			t.Logf("left: %d containers, %d snapshots, %d IPs, %d netns", cs, snaps, ips, ns)
			return false
		}
		return true
	})
}

// TestAgentAndContainerdCrashes kills the gantry process (server and
// agent) and then the managed containerd with -9; instances survive both.
func TestAgentAndContainerdCrashes(t *testing.T) {
	c := StartCluster(t, ClusterOptions{})
	c.Push(WebappImage(t), "default/webapp:v1")
	c.apply(webapp("steady", "default", "v1", 3, ""))
	before := c.waitRunning("default", "steady", 3, 60*time.Second)
	pids := map[string]int{}
	for _, i := range before {
		pids[i.Metadata.Name] = mainPID(t, i.Metadata.Name)
	}

	c.Kill9()
	c.Restart()
	after := c.waitRunning("default", "steady", 3, 60*time.Second)
	for _, i := range after {
		old, ok := pids[i.Metadata.Name]
		if !ok {
			t.Fatalf("instance %s is new: the agent replaced instead of adopting", i.Metadata.Name)
		}
		if pid := mainPID(t, i.Metadata.Name); pid != old {
			t.Fatalf("instance %s: main pid %d, was %d: restarted instead of adopted", i.Metadata.Name, pid, old)
		}
		if i.Status.Restarts != 0 {
			t.Fatalf("instance %s restart count %d after an agent restart", i.Metadata.Name, i.Status.Restarts)
		}
	}

	b, err := os.ReadFile(filepath.Join(c.Dir, "node", "containerd", "containerd.pid"))
	if err != nil {
		t.Fatal(err)
	}
	var cpid int
	fmt.Sscanf(string(b), "%d", &cpid)
	if err := syscall.Kill(cpid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	Eventually(t, 30*time.Second, "containerd back", func() bool {
		b, err := os.ReadFile(filepath.Join(c.Dir, "node", "containerd", "containerd.pid"))
		var p int
		fmt.Sscanf(string(b), "%d", &p)
		return err == nil && p != cpid && syscall.Kill(p, 0) == nil
	})
	// The app keeps running, and the agent still manages it: a kill of
	// its process is restarted by the new containerd.
	c.waitRunning("default", "steady", 3, 30*time.Second)
	victim := after[0].Metadata.Name
	syscall.Kill(mainPID(t, victim), syscall.SIGKILL)
	var last v1.InstanceStatus
	defer func() {
		if t.Failed() {
			b, _ := json.Marshal(last)
			t.Logf("last status of %s: %s", victim, b)
		}
	}()
	Eventually(t, 10*time.Second, "restart after containerd came back", func() bool {
		i, err := client.Get[*v1.Instance](context.Background(), c.Client, "default", victim)
		if err == nil {
			last = i.Status
		}
		return err == nil && i.Status.Restarts == 1 && i.Status.Phase == v1.PhaseRunning
	})
}

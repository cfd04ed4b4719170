package agent

import (
	"context"
	"net"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// docs/guide.md: "A failing liveness check restarts the container in
// place". With restartPolicy on-failure, an app that handled the SIGTERM
// the agent sends on a liveness failure and exited 0 (what a graceful
// shutdown does) was not restarted: afterExit looked only at the exit
// code, so a hung app stopped by its liveness check ended Succeeded.
// (Kubernetes restarts on a liveness failure under OnFailure.)
func TestLivenessKillUnderOnFailureRestarts(t *testing.T) {
	api := &flakyAPI{}
	a := agentWithAPI(t, &scriptedRuntime{}, api)
	inst := instanceWith(v1.Health{})
	inst.Spec.Template.RestartPolicy = v1.RestartOnFailure
	w := newWorker(a, inst)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan bool, 1)
	crashes := 0
	go func() {
		done <- w.afterExit(ctx, 0, exitReason(0, "LivenessFailed"), time.Now().Add(-time.Minute), &crashes)
	}()
	time.Sleep(300 * time.Millisecond)
	cancel()
	<-done
	api.mu.Lock()
	defer api.mu.Unlock()
	if len(api.statuses) == 0 {
		t.Fatal("no status written")
	}
	last := api.statuses[len(api.statuses)-1]
	if last.Phase == v1.PhaseSucceeded || last.Restarts != 1 {
		t.Fatalf("after a liveness kill under on-failure: phase %s, reason %s, restarts %d; want it restarted", last.Phase, last.Reason, last.Restarts)
	}
}

// After an agent restart the worker adopts the running container and
// keeps its readiness (Ready=true) "until a probe says otherwise". With a
// startup check, the startup check ran again and gated readiness and
// liveness; while it failed, nothing ever cleared Ready: the API said
// Phase=Starting, "startup check failing", Ready=true, and the load
// balancer kept sending traffic to an app whose checks all failed. A
// ready adopted instance's startup check passed before: it is not run.
func TestAdoptedReadyInstanceSkipsItsStartupCheck(t *testing.T) {
	api := &flakyAPI{}
	rt := &scriptedRuntime{failFrom: 1} // every exec check fails
	a := agentWithAPI(t, rt, api)
	probe := &v1.Probe{Exec: &v1.ExecCheck{Command: []string{"true"}}, Period: v1.Duration(30 * time.Millisecond), FailureThreshold: 1}
	inst := instanceWith(v1.Health{Startup: probe, Readiness: probe, Liveness: probe})
	started := time.Now().Add(-time.Hour).UTC()
	inst.Status = v1.InstanceStatus{Phase: v1.PhaseRunning, Ready: true, StartedAt: &started, Node: "n1"}
	w := newWorker(a, inst)
	w.ip = net.IPv4(10, 0, 0, 9)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.watchRun(ctx, started, w.status.Ready) }()
	time.Sleep(time.Second)
	cancel()
	<-done
	rt.mu.Lock()
	execs := rt.execs
	rt.mu.Unlock()
	api.mu.Lock()
	defer api.mu.Unlock()
	if len(api.statuses) == 0 {
		t.Fatal("no status written")
	}
	last := api.statuses[len(api.statuses)-1]
	if last.Ready {
		t.Fatalf("1s of failing checks after adoption: phase %s, message %q, Ready=%v (%d execs)", last.Phase, last.Message, last.Ready, execs)
	}
}

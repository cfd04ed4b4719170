package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/runtime"
)

// checkStopRuntime: a container that runs until the test says otherwise;
// exec checks always fail; Stop answers from stopErrs (one per call, nil
// once used up) and records its grace.
type checkStopRuntime struct {
	Runtime
	mu       sync.Mutex
	stopErrs []error
	stops    []time.Duration
	removes  int
	inspect  func() (runtime.Container, error)
}

func (f *checkStopRuntime) Wait(context.Context, string) (<-chan runtime.Exit, error) {
	return make(chan runtime.Exit), nil
}

func (f *checkStopRuntime) Exec(context.Context, string, runtime.ExecOptions) (int, error) {
	return 1, nil
}

func (f *checkStopRuntime) Stop(_ context.Context, _ string, grace time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stops = append(f.stops, grace)
	if len(f.stopErrs) == 0 {
		return nil
	}
	err := f.stopErrs[0]
	f.stopErrs = f.stopErrs[1:]
	return err
}

func (f *checkStopRuntime) Remove(context.Context, string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removes++
	return nil
}

func (f *checkStopRuntime) Inspect(context.Context, string) (runtime.Container, error) {
	if f.inspect != nil {
		return f.inspect()
	}
	return runtime.Container{}, fmt.Errorf("no such container: %w", v1.ErrNotFound)
}

func (f *checkStopRuntime) stopCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.stops)
}

// watchRunFor has a worker watch one run of inst's container for d.
func watchRunFor(a *Agent, inst *v1.Instance, d time.Duration) {
	w := newWorker(a, inst)
	w.ip = net.IPv4(10, 0, 0, 9)
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	w.watchRun(ctx, time.Now(), false)
}

// A liveness failure whose Stop failed (not as unavailable: the SIGTERM
// could not be delivered, or containerd stayed away longer than
// rewaitFor) cleared killedBy, but the probe loop had reported the
// failure once and reported none again while the check kept failing:
// the hung container was never stopped again. The loop now reports each
// run of failureThreshold failures (the kubelet kills again too).
func TestLivenessStopIsRetriedAfterAFailedStop(t *testing.T) {
	api := &flakyAPI{}
	rt := &checkStopRuntime{stopErrs: []error{errors.New("stop web-1: SIGTERM: shim said no")}}
	a := agentWithAPI(t, rt, api)
	probe := &v1.Probe{Exec: &v1.ExecCheck{Command: []string{"true"}}, Period: v1.Duration(20 * time.Millisecond), FailureThreshold: 1, SuccessThreshold: 1}
	inst := instanceWith(v1.Health{Liveness: probe})
	watchRunFor(a, inst, 1500*time.Millisecond)
	if n := rt.stopCount(); n < 2 {
		t.Fatalf("liveness failing for 1.5s at a 20ms period, threshold 1: Stop called %d time(s); after the first Stop failed the hung container is never stopped again", n)
	}
}

// Under Kubernetes a startup probe that fails failureThreshold times gets
// the container killed and restarted per its restart policy (that is
// what `failureThreshold: 30` in docs/guide.md's example is for: a 30s
// start budget). A startup check that never passed only changed the
// message: the container stayed Starting forever.
func TestStartupFailureThresholdStopsTheContainer(t *testing.T) {
	api := &flakyAPI{}
	rt := &checkStopRuntime{}
	a := agentWithAPI(t, rt, api)
	probe := &v1.Probe{Exec: &v1.ExecCheck{Command: []string{"true"}}, Period: v1.Duration(20 * time.Millisecond), FailureThreshold: 3, SuccessThreshold: 1}
	inst := instanceWith(v1.Health{Startup: probe})
	watchRunFor(a, inst, 1500*time.Millisecond)
	if n := rt.stopCount(); n == 0 {
		api.mu.Lock()
		last := api.statuses[len(api.statuses)-1]
		api.mu.Unlock()
		t.Fatalf("startup check failed ~15 times (threshold 3) and the container was never stopped; last status: phase %s, message %q", last.Phase, last.Message)
	}
}

// A check that has not passed yet is retried every 100ms, and every
// retry counted toward failureThreshold: a startup check with period 1s
// and failureThreshold 5 (a 5s budget) reached its threshold in about
// half a second. Failures now count once a period.
func TestStartupThresholdCountsPeriodsNotQuickRetries(t *testing.T) {
	var mu sync.Mutex
	var firstFailure time.Duration
	start := time.Now()
	p := &v1.Probe{Exec: &v1.ExecCheck{Command: []string{"true"}}, Period: v1.Duration(time.Second), FailureThreshold: 5, SuccessThreshold: 1}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	loop(ctx, &checkStopRuntime{}, "x", nil, p, false, untilPass, func(ok bool, msg string) bool {
		mu.Lock()
		defer mu.Unlock()
		if !ok && firstFailure == 0 {
			firstFailure = time.Since(start)
		}
		return false
	})
	mu.Lock()
	defer mu.Unlock()
	if firstFailure != 0 && firstFailure < 4*time.Second {
		t.Fatalf("startup check with period 1s, failureThreshold 5 declared failing after %v (want ~4-5s)", firstFailure.Round(time.Millisecond))
	}
}

// An instance deleted while it had never started (image pull failing,
// say: no container, no address, never in the load balancer or DNS) was
// still "drained" for the whole drainDelay (up to 1h) before its object
// went.
func TestNeverStartedInstanceIsNotDrained(t *testing.T) {
	api := &flakyAPI{}
	rt := &checkStopRuntime{}
	a := agentWithAPI(t, rt, api)
	inst := instanceWith(v1.Health{})
	now := time.Now()
	inst.Metadata.Deleting = &now
	inst.Spec.DrainDelay = v1.Duration(3 * time.Second)
	inst.Status = v1.InstanceStatus{Phase: v1.PhasePending, Reason: "ErrImagePull", Node: "n1"}
	w := newWorker(a, inst)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	w.run(ctx)
	took := time.Since(start)
	api.mu.Lock()
	deletes := api.deletes
	api.mu.Unlock()
	if deletes == 0 {
		t.Fatalf("instance object never deleted (took %v)", took)
	}
	if took > 2*time.Second {
		t.Fatalf("an instance that never ran (no container, no IP) waited %v of drainDelay before it was removed", took.Round(100*time.Millisecond))
	}
}

// An agent restarted while a drained instance had its grace period (the
// drain ended 4s ago, the grace is 10s) sent SIGTERM again with the whole
// grace period: each restart gave the process up to an hour more. It
// now gets what is left.
func TestRestartedAgentGivesWhatIsLeftOfTheGracePeriod(t *testing.T) {
	api := &flakyAPI{}
	rt := &checkStopRuntime{}
	a := agentWithAPI(t, rt, api)
	w := deletingWorker(a)
	w.desired.Spec.DrainDelay = v1.Duration(2 * time.Second)
	grace := v1.Duration(10 * time.Second)
	w.desired.Spec.Template.StopGracePeriod = &grace
	os.MkdirAll(a.instanceDir(w.id), 0o700)
	began := time.Now().Add(-6 * time.Second) // drain 2s, then 4s of grace
	os.WriteFile(filepath.Join(a.instanceDir(w.id), drainFile), []byte(w.uid+" "+began.Format(time.RFC3339Nano)), 0o600)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	w.terminate(ctx)
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if len(rt.stops) != 1 {
		t.Fatalf("%d stops, want 1", len(rt.stops))
	}
	if got := rt.stops[0]; got < 5*time.Second || got > 6*time.Second+500*time.Millisecond {
		t.Fatalf("stopped with a grace of %s, want what is left of 10s after 4s (about 6s)", got)
	}
}

func TestGraceLeft(t *testing.T) {
	for _, tt := range []struct{ grace, elapsed, want time.Duration }{
		{10 * time.Second, 0, 10 * time.Second},
		{10 * time.Second, -time.Second, 10 * time.Second}, // the drain has not ended
		{10 * time.Second, 4 * time.Second, 6 * time.Second},
		{10 * time.Second, time.Hour, time.Second}, // past: SIGTERM still gets a second
		{0, time.Minute, 0},                        // none asked for
		{500 * time.Millisecond, time.Minute, 500 * time.Millisecond},
	} {
		if got := graceLeft(tt.grace, tt.elapsed); got != tt.want {
			t.Errorf("graceLeft(%s, %s) = %s, want %s", tt.grace, tt.elapsed, got, tt.want)
		}
	}
}

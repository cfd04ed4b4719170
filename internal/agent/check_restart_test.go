package agent

import (
	"context"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/runtime"
)

// waitForStatus waits until api has accepted a status for which ok is
// true, and returns it.
func waitForStatus(t *testing.T, api *flakyAPI, ok func(v1.InstanceStatus) bool) v1.InstanceStatus {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		api.mu.Lock()
		for _, s := range api.statuses {
			if ok(s) {
				api.mu.Unlock()
				return s
			}
		}
		api.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	api.mu.Lock()
	defer api.mu.Unlock()
	t.Fatalf("no such status written in 10s; statuses %+v", api.statuses)
	return v1.InstanceStatus{}
}

// failingCheckRuntime: a container that runs until the test ends; exec
// checks always fail; onStop is called at each Stop.
type failingCheckRuntime struct {
	Runtime
	onStop func()
}

func (f *failingCheckRuntime) Wait(context.Context, string) (<-chan runtime.Exit, error) {
	return make(chan runtime.Exit), nil
}

func (f *failingCheckRuntime) Exec(context.Context, string, runtime.ExecOptions) (int, error) {
	return 1, nil
}

func (f *failingCheckRuntime) Stop(context.Context, string, time.Duration) error {
	f.onStop()
	return nil
}

// A liveness or startup check that failed had the container stopped with
// no reason in its status (a message at most, and none in the status
// during a startup stop): for the whole grace period, up to an hour,
// `gantry get instances` gave no clue why the instance was going down.
// The status now says why, naming the check and its last error, before
// the stop begins; a record on disk says so too, for a restarted agent.
func TestCheckStopSaysWhyBeforeTheStop(t *testing.T) {
	probe := &v1.Probe{Exec: &v1.ExecCheck{Command: []string{"check"}}, Period: v1.Duration(20 * time.Millisecond), FailureThreshold: 1}
	for _, tt := range []struct {
		name   string
		health v1.Health
		reason string
	}{
		{"a failed liveness check", v1.Health{Liveness: probe}, reasonLivenessFailed},
		{"a startup check that never passed", v1.Health{Startup: probe}, reasonStartupFailed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			api := &flakyAPI{}
			rt := &failingCheckRuntime{}
			a := agentWithAPI(t, rt, api)
			inst := instanceWith(tt.health)
			grace := v1.Duration(7 * time.Second)
			inst.Spec.Template.StopGracePeriod = &grace
			w := newWorker(a, inst)
			w.ip = net.IPv4(10, 0, 0, 9)
			var atStop v1.InstanceStatus
			var record checkStop
			var recorded bool
			stopped := make(chan struct{})
			var once sync.Once
			rt.onStop = func() {
				once.Do(func() {
					api.mu.Lock()
					atStop = api.statuses[len(api.statuses)-1]
					api.mu.Unlock()
					record, recorded = w.readCheckStop()
					close(stopped)
				})
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); w.watchRun(ctx, time.Now(), false) }()
			select {
			case <-stopped:
			case <-time.After(10 * time.Second):
				t.Fatal("the failing check never had the container stopped")
			}
			cancel()
			<-done
			if atStop.Reason != tt.reason {
				t.Errorf("status when the stop began: reason %q, message %q; want reason %q", atStop.Reason, atStop.Message, tt.reason)
			}
			check := string(checkOf(tt.reason))
			for _, want := range []string{check + " check failed", "exec [check] exited with 1", "SIGKILL after 7s"} {
				if !strings.Contains(atStop.Message, want) {
					t.Errorf("status message when the stop began %q does not say %q", atStop.Message, want)
				}
			}
			if atStop.Ready {
				t.Error("ready while being stopped")
			}
			if !recorded || record.reason != tt.reason || time.Since(record.began) > 10*time.Second {
				t.Errorf("record on disk when the stop began: %+v (found %v)", record, recorded)
			}
		})
	}
}

// resumeRuntime: an adopted container whose first run ends (code 0: the
// app handled its SIGTERM) when it is stopped; later runs go on. It
// records Stops and Starts.
type resumeRuntime struct {
	Runtime
	mu      sync.Mutex
	exit    chan runtime.Exit
	waits   int
	stops   []time.Duration
	starts  int
	started chan struct{} // closed at the first Start
}

func newResumeRuntime() *resumeRuntime {
	return &resumeRuntime{exit: make(chan runtime.Exit, 1), started: make(chan struct{})}
}

func (f *resumeRuntime) Wait(context.Context, string) (<-chan runtime.Exit, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.waits++
	if f.waits == 1 {
		return f.exit, nil
	}
	return make(chan runtime.Exit), nil
}

func (f *resumeRuntime) Stop(_ context.Context, _ string, grace time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stops = append(f.stops, grace)
	select {
	case f.exit <- runtime.Exit{Code: 0, At: time.Now()}:
	default:
	}
	return nil
}

func (f *resumeRuntime) Start(context.Context, string) (uint32, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.starts++
	if f.starts == 1 {
		close(f.started)
	}
	return 1, nil
}

// An agent restarted while it stopped a container whose liveness or
// startup check failed (SIGTERM sent, grace period running) forgot the
// stop: the new agent adopted the container as a healthy one, so an app
// that ignored SIGTERM never got its SIGKILL and ran on, and one that
// exited 0 on it counted as a clean exit (Succeeded under on-failure).
// The new agent now finishes the stop, with what is left of the grace
// period, and the exit goes through the restart policy as a failure.
func TestRestartedAgentFinishesAStopForAFailedCheck(t *testing.T) {
	const grace = 10 * time.Second
	for _, tt := range []struct {
		name       string
		c          runtime.Container
		status     v1.InstanceStatus
		record     string        // reason in the record on disk; "" for none
		recordAge  time.Duration // how long ago the record's stop began
		wantReason string
		// the grace the new agent's Stop gets, within 1.5s below; 0 for
		// no Stop
		wantGrace time.Duration
	}{
		{
			name:       "liveness stop begun 4s ago: SIGKILL after the 6s left",
			c:          runtime.Container{Status: runtime.StatusRunning},
			status:     v1.InstanceStatus{Phase: v1.PhaseRunning, Reason: reasonLivenessFailed, Message: "liveness check failed: ..."},
			record:     reasonLivenessFailed,
			recordAge:  4 * time.Second,
			wantReason: reasonLivenessFailed,
			wantGrace:  6 * time.Second,
		},
		{
			name:       "startup stop begun 4s ago: SIGKILL after the 6s left",
			c:          runtime.Container{Status: runtime.StatusRunning},
			status:     v1.InstanceStatus{Phase: v1.PhaseStarting, Reason: reasonStartupFailed, Message: "startup check failed: ..."},
			record:     reasonStartupFailed,
			recordAge:  4 * time.Second,
			wantReason: reasonStartupFailed,
			wantGrace:  6 * time.Second,
		},
		{
			name:       "the status says so but no record does: the whole grace period",
			c:          runtime.Container{Status: runtime.StatusRunning},
			status:     v1.InstanceStatus{Phase: v1.PhaseRunning, Reason: reasonLivenessFailed, Message: "liveness check failed: ..."},
			wantReason: reasonLivenessFailed,
			wantGrace:  grace,
		},
		{
			name:       "a record but the status write never landed",
			c:          runtime.Container{Status: runtime.StatusRunning},
			status:     v1.InstanceStatus{Phase: v1.PhaseRunning},
			record:     reasonLivenessFailed,
			recordAge:  4 * time.Second,
			wantReason: reasonLivenessFailed,
			wantGrace:  6 * time.Second,
		},
		{
			name:       "exited 0 on the SIGTERM while no agent ran: a failure all the same",
			c:          runtime.Container{Status: runtime.StatusStopped, ExitCode: 0, ExitedAt: time.Now().Add(-time.Second)},
			status:     v1.InstanceStatus{Phase: v1.PhaseRunning},
			record:     reasonLivenessFailed,
			recordAge:  4 * time.Second,
			wantReason: reasonLivenessFailed,
		},
		{
			name:       "exited 0 on the SIGTERM, no record: the status says why",
			c:          runtime.Container{Status: runtime.StatusStopped, ExitCode: 0, ExitedAt: time.Now().Add(-time.Second)},
			status:     v1.InstanceStatus{Phase: v1.PhaseRunning, Reason: reasonLivenessFailed, Message: "liveness check failed: ..."},
			wantReason: reasonLivenessFailed,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			api := &flakyAPI{}
			rt := newResumeRuntime()
			a := agentWithAPI(t, rt, api)
			inst := instanceWith(v1.Health{})
			inst.Spec.Template.RestartPolicy = v1.RestartOnFailure
			g := v1.Duration(grace)
			inst.Spec.Template.StopGracePeriod = &g
			started := time.Now().Add(-time.Hour).UTC()
			inst.Status = tt.status
			inst.Status.StartedAt, inst.Status.IP, inst.Status.Node = &started, "10.0.0.9", "n1"
			w := newWorker(a, inst)
			w.ip = net.IPv4(10, 0, 0, 9)
			if tt.record != "" {
				w.recordCheckStop(tt.record)
				// Backdate it.
				line := w.uid + " " + tt.record + " " + time.Now().Add(-tt.recordAge).UTC().Format(time.RFC3339Nano) + "\n"
				if err := os.WriteFile(w.checkStopPath(), []byte(line), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if tt.c.Status == runtime.StatusStopped && w.finishedForGood(tt.c) {
				t.Error("finishedForGood: an exit a failed check caused is taken for a clean one; on-failure would not restart it")
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); w.supervise(ctx, tt.c) }()
			select {
			case <-rt.started:
			case <-time.After(10 * time.Second):
			}
			cancel()
			<-done
			api.mu.Lock()
			statuses := append([]v1.InstanceStatus(nil), api.statuses...)
			api.mu.Unlock()
			rt.mu.Lock()
			stops, starts := rt.stops, rt.starts
			rt.mu.Unlock()
			if tt.wantGrace != 0 {
				if len(stops) != 1 || stops[0] > tt.wantGrace || stops[0] < tt.wantGrace-1500*time.Millisecond {
					t.Errorf("stops with grace %v; want one with about %s", stops, tt.wantGrace)
				}
			} else if len(stops) != 0 {
				t.Errorf("stops with grace %v; want none (the process exited)", stops)
			}
			if starts != 1 {
				t.Fatalf("%d starts after the exit; want it restarted (statuses %+v)", starts, statuses)
			}
			counted := false
			for _, s := range statuses {
				if s.Phase == v1.PhaseSucceeded || s.Phase == v1.PhaseFailed {
					t.Errorf("status %s (%s): the exit was taken as final", s.Phase, s.Reason)
				}
				if s.Restarts == 1 && s.Reason == tt.wantReason {
					counted = true
				}
			}
			if !counted {
				t.Errorf("no status with the restart counted and reason %s: %+v", tt.wantReason, statuses)
			}
			if _, ok := w.readCheckStop(); ok {
				t.Error("the record of the stop outlived the restart: a later agent restart would stop the new run")
			}
		})
	}
}

// A container the agent restarted itself (afterExit wrote the check's
// reason with the exit, then Start) is a new run: an agent restarted
// before that run was reported Running must not take it for one being
// stopped.
func TestRestartedAgentDoesNotStopTheRunAfterACheckStop(t *testing.T) {
	api := &flakyAPI{}
	rt := newResumeRuntime()
	a := agentWithAPI(t, rt, api)
	inst := instanceWith(v1.Health{})
	inst.Spec.Template.RestartPolicy = v1.RestartAlways
	fin := time.Now().Add(-time.Second).UTC()
	code := 0
	inst.Status = v1.InstanceStatus{Phase: v1.PhaseStarting, Reason: reasonLivenessFailed, Restarts: 1,
		ExitCode: &code, FinishedAt: &fin, IP: "10.0.0.9", Node: "n1"}
	w := newWorker(a, inst)
	w.ip = net.IPv4(10, 0, 0, 9)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.supervise(ctx, runtime.Container{Status: runtime.StatusRunning}) }()
	s := waitForStatus(t, api, func(s v1.InstanceStatus) bool { return s.Phase == v1.PhaseRunning })
	cancel()
	<-done
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if s.Reason != "" || len(rt.stops) != 0 {
		t.Fatalf("the run started after a check's stop was taken for that stop: reason %q, stops %v", s.Reason, rt.stops)
	}
}

// The crash-loop back-off started over whenever a run had lasted 30s: a
// container that crashed after 40s of work was restarted forever at
// once, never backing off. As under the kubelet, it now starts over
// only after 10 minutes of running.
func TestBackoffStartsOverOnlyAfterTenMinutesOfRunning(t *testing.T) {
	for _, tt := range []struct {
		name        string
		ran         time.Duration
		wantCrashes int
		wantMsg     string
	}{
		{"a run of 20s keeps backing off", 20 * time.Second, 4, "back-off 4s"},
		{"a run of 40s keeps backing off", 40 * time.Second, 4, "back-off 4s"},
		{"a run of 9m keeps backing off", 9 * time.Minute, 4, "back-off 4s"},
		{"a run of 10m starts over", 10 * time.Minute, 1, "restarting"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			api := &flakyAPI{}
			a := agentWithAPI(t, &scriptedRuntime{}, api)
			inst := instanceWith(v1.Health{})
			inst.Spec.Template.RestartPolicy = v1.RestartAlways
			w := newWorker(a, inst)
			ctx, cancel := context.WithCancel(context.Background())
			crashes := 3 // three quick crashes before this run
			done := make(chan struct{})
			go func() {
				defer close(done)
				w.afterExit(ctx, 1, "Error", time.Now().Add(-tt.ran), &crashes)
			}()
			s := waitForStatus(t, api, func(s v1.InstanceStatus) bool { return s.Restarts == 1 })
			cancel()
			<-done
			if crashes != tt.wantCrashes || !strings.HasPrefix(s.Message, tt.wantMsg) {
				t.Fatalf("after a run of %s: %d crashes in a row, message %q; want %d, %q", tt.ran, crashes, s.Message, tt.wantCrashes, tt.wantMsg)
			}
		})
	}
}

package agent

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/runtime"
)

// unavailableOnceRuntime: containerd goes away once, for the first Wait
// (it restarts); the container's process runs on through it (its shim
// keeps it), so every later Wait blocks.
type unavailableOnceRuntime struct {
	Runtime
	mu     sync.Mutex
	waits  int
	starts int
}

func (f *unavailableOnceRuntime) Wait(context.Context, string) (<-chan runtime.Exit, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.waits++
	if f.waits == 1 {
		return nil, fmt.Errorf("wait web-1: connection refused: %w", v1.ErrUnavailable)
	}
	return make(chan runtime.Exit), nil
}

func (f *unavailableOnceRuntime) Start(context.Context, string) (uint32, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.starts++
	return 42, nil // the task runs: Start returns its pid
}

// A worker whose first Wait on a container finds containerd restarting
// waits for it to come back, as its later waits do: it does not take the
// container for gone (a restart-never instance reported Failed while its
// process runs on, a restart-always one counting a restart that never
// happened).
func TestFirstWaitOutlastsAContainerdRestart(t *testing.T) {
	for _, policy := range []string{v1.RestartNever, v1.RestartAlways} {
		t.Run(policy, func(t *testing.T) {
			api := &flakyAPI{}
			rt := &unavailableOnceRuntime{}
			a := agentWithAPI(t, rt, api)
			inst := instanceWith(v1.Health{})
			inst.Spec.Template.RestartPolicy = policy
			w := newWorker(a, inst)
			ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
			defer cancel()
			w.supervise(ctx, runtime.Container{ID: w.id, Status: runtime.StatusRunning})
			api.mu.Lock()
			defer api.mu.Unlock()
			for _, st := range api.statuses {
				if st.Phase == v1.PhaseFailed || st.Restarts > 0 || st.Reason == "ContainerGone" {
					t.Fatalf("container never stopped, yet the agent reported phase=%s reason=%s restarts=%d message=%q",
						st.Phase, st.Reason, st.Restarts, st.Message)
				}
			}
		})
	}
}

// exitsAtOnceRuntime: the container's process exits with code 0 as soon
// as it is waited on.
type exitsAtOnceRuntime struct{ Runtime }

func (exitsAtOnceRuntime) Wait(context.Context, string) (<-chan runtime.Exit, error) {
	ch := make(chan runtime.Exit, 1)
	ch <- runtime.Exit{Code: 0, At: time.Now()}
	return ch, nil
}

// A run-once instance (restart policy never) whose process exits while
// the API server restarts: the final status (Succeeded, not ready),
// refused with a 503, is sent again until it gets through, or the API
// would say Running and Ready for good, and DNS and the ingress route to
// a process that is gone.
func TestFinalStatusIsSentAgainWhenTheAPIWasAway(t *testing.T) {
	api := &flakyAPI{}
	began := time.Now()
	api.fail = func(r *http.Request, st *v1.InstanceStatus) bool {
		return st != nil && st.FinishedAt != nil && time.Since(began) < 300*time.Millisecond
	}
	a := agentWithAPI(t, exitsAtOnceRuntime{}, api)
	inst := instanceWith(v1.Health{})
	inst.Spec.Template.RestartPolicy = v1.RestartNever
	w := newWorker(a, inst)
	w.status.Ready = true // adopted, known ready
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	w.supervise(ctx, runtime.Container{ID: w.id, Status: runtime.StatusRunning})
	api.mu.Lock()
	defer api.mu.Unlock()
	if len(api.statuses) == 0 {
		t.Fatal("no status accepted")
	}
	if last := api.statuses[len(api.statuses)-1]; last.Phase != v1.PhaseSucceeded || last.Ready {
		t.Fatalf("1.7s after the API came back, the API still has phase=%s ready=%v for an instance whose process exited", last.Phase, last.Ready)
	}
}

// While containerd restarts (the node supervises it and restarts it in
// seconds), an exec check cannot run at all: that is no verdict on the
// app, so a readiness check does not take a healthy instance out of DNS
// and the ingress, nor a liveness check kill it.
func TestExecCheckGivesNoVerdictWhileContainerdRestarts(t *testing.T) {
	rt := &fakeRuntime{exec: func(ctx context.Context) (int, error) {
		return -1, fmt.Errorf("exec: connection refused: %w", v1.ErrUnavailable)
	}}
	p := &v1.Probe{Exec: &v1.ExecCheck{Command: []string{"true"}}, Period: v1.Duration(20 * time.Millisecond), FailureThreshold: 3, SuccessThreshold: 1}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	var verdicts []bool
	loop(ctx, rt, "c1", nil, p, true, onFlip, func(ok bool, msg string) bool {
		verdicts = append(verdicts, ok)
		return true
	})
	for _, ok := range verdicts {
		if !ok {
			t.Fatalf("a liveness exec check was judged failing (a kill) while containerd could not be reached; verdicts %v", verdicts)
		}
	}
}

package agent

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/runtime"
)

// exitedRuntime: the container's process has exited by the time the
// worker waits on it.
type exitedRuntime struct {
	Runtime
	exit  runtime.Exit // zero: code 7
	mu    sync.Mutex
	waits int
}

func (f *exitedRuntime) Wait(context.Context, string) (<-chan runtime.Exit, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.waits++
	ch := make(chan runtime.Exit, 1)
	if f.waits == 1 {
		ex := f.exit
		if ex.Code == 0 {
			ex.Code = 7
		}
		ex.At = time.Now()
		ch <- ex
	}
	return ch, nil
}

func (f *exitedRuntime) Start(context.Context, string) (uint32, error) { return 1, nil }
func (f *exitedRuntime) Stop(context.Context, string, time.Duration) error {
	return nil
}

// Without a readiness check, the agent reports an instance ready as soon
// as it runs; when the process had exited already, select took the ready
// result or the exit at random, and half of the Apps whose command exits
// at once were reported ready (a rollout counts that as progress and
// retires an old instance for it) (review helper-162).
func TestAnExitedProcessIsNeverReportedReady(t *testing.T) {
	for n := range 20 {
		api := runToExit(t, &exitedRuntime{})
		api.mu.Lock()
		for _, st := range api.statuses {
			if st.Ready {
				t.Errorf("run %d: status %s ready=true written for a process that had exited (code 7)", n, st.Phase)
			}
		}
		api.mu.Unlock()
	}
}

// runToExit supervises an adopted running container of an instance with
// restart policy never, whose process has exited, until its exit is
// reported, and returns what the API received.
func runToExit(t *testing.T, rt *exitedRuntime) *flakyAPI {
	t.Helper()
	inst := instanceWith(v1.Health{})
	inst.Spec.Template.RestartPolicy = v1.RestartNever
	inst.Spec.Template.Resources.Memory = 16 << 20
	api, stop := superviseAdopted(t, rt, inst)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		api.mu.Lock()
		finished := len(api.statuses) > 0 && api.statuses[len(api.statuses)-1].Phase == v1.PhaseFailed
		api.mu.Unlock()
		if finished {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	stop()
	return api
}

// An OOM kill showed as reason Killed (exit 137), the same as a kill -9
// or a grace period run out; Docker says OOMKilled, and so does
// Kubernetes (review helper-162).
func TestAnOOMKillIsReportedAsSuch(t *testing.T) {
	for _, tc := range []struct {
		exit runtime.Exit
		want string
	}{
		{runtime.Exit{Code: 137, OOMKilled: true}, "OOMKilled"},
		{runtime.Exit{Code: 137}, "Killed"},
	} {
		api := runToExit(t, &exitedRuntime{exit: tc.exit})
		api.mu.Lock()
		last := api.statuses[len(api.statuses)-1]
		api.mu.Unlock()
		if last.Phase != v1.PhaseFailed || last.Reason != tc.want {
			t.Errorf("exit %+v: status %s reason %q (%s), want Failed %s", tc.exit, last.Phase, last.Reason, last.Message, tc.want)
		}
		if tc.want == "OOMKilled" && !strings.Contains(last.Message, "memory limit") {
			t.Errorf("message %q does not say what to do", last.Message)
		}
	}
}

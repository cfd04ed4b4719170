package agent

import (
	"context"
	"net"
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
	mu    sync.Mutex
	waits int
}

func (f *exitedRuntime) Wait(context.Context, string) (<-chan runtime.Exit, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.waits++
	ch := make(chan runtime.Exit, 1)
	if f.waits == 1 {
		ch <- runtime.Exit{Code: 7, At: time.Now()}
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
		api := &flakyAPI{}
		a := agentWithAPI(t, &exitedRuntime{}, api)
		inst := instanceWith(v1.Health{})
		inst.Spec.Template.RestartPolicy = v1.RestartNever
		w := newWorker(a, inst)
		w.ip = net.IPv4(10, 0, 0, 9)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			w.supervise(ctx, runtime.Container{Status: runtime.StatusRunning})
		}()
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			api.mu.Lock()
			finished := len(api.statuses) > 0 && api.statuses[len(api.statuses)-1].ExitCode != nil
			api.mu.Unlock()
			if finished {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
		<-done
		api.mu.Lock()
		for _, st := range api.statuses {
			if st.Ready {
				t.Errorf("run %d: status %s ready=true written for a process that had exited (code 7)", n, st.Phase)
			}
		}
		api.mu.Unlock()
	}
}

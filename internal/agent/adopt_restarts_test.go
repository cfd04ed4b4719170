package agent

import (
	"context"
	"sync"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/runtime"
)

type startRuntime struct {
	Runtime
	mu     sync.Mutex
	starts int
}

func (f *startRuntime) Start(context.Context, string) (uint32, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.starts++
	return 1, nil
}

func (f *startRuntime) Wait(context.Context, string) (<-chan runtime.Exit, error) {
	return make(chan runtime.Exit), nil
}

// The previous agent saw the container exit, counted the restart
// (Restarts 3, ExitCode and FinishedAt of that exit) and was waiting out
// the back-off when it was restarted (an upgrade). The new agent adopted
// the stopped container and counted the same exit again.
func TestAdoptedExitAlreadyCountedIsNotCountedAgain(t *testing.T) {
	api := &flakyAPI{}
	rt := &startRuntime{}
	a := agentWithAPI(t, rt, api)
	inst := instanceWith(v1.Health{})
	inst.Spec.Template.RestartPolicy = v1.RestartAlways
	exited := time.Now().Add(-2 * time.Second).UTC()
	code := 1
	inst.Status = v1.InstanceStatus{Phase: v1.PhaseBackOff, Reason: "Error", Restarts: 3, ExitCode: &code, FinishedAt: &exited, Node: "n1"}
	w := newWorker(a, inst)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.supervise(ctx, runtime.Container{Status: runtime.StatusStopped, ExitCode: code, ExitedAt: exited})
	}()
	time.Sleep(300 * time.Millisecond)
	cancel()
	<-done
	api.mu.Lock()
	defer api.mu.Unlock()
	max := 0
	for _, s := range api.statuses {
		if s.Restarts > max {
			max = s.Restarts
		}
	}
	if max != 3 {
		t.Fatalf("one exit, already counted by the previous agent, now gives restarts %d (was 3)", max)
	}
}

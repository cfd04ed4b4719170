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

// maxRestartsAfterAdopting has a new agent adopt the stopped container
// of an instance whose stored status has phase and an exit (code 1, two
// seconds ago) beside three restarts, and returns the highest restart
// count it writes.
func maxRestartsAfterAdopting(t *testing.T, phase string) int {
	t.Helper()
	api := &flakyAPI{}
	a := agentWithAPI(t, &startRuntime{}, api)
	inst := instanceWith(v1.Health{})
	inst.Spec.Template.RestartPolicy = v1.RestartAlways
	exited := time.Now().Add(-2 * time.Second).UTC()
	started := exited.Add(-time.Minute)
	code := 1
	inst.Status = v1.InstanceStatus{Phase: phase, Restarts: 3, ExitCode: &code, FinishedAt: &exited, StartedAt: &started, Node: "n1"}
	if phase == v1.PhaseBackOff {
		inst.Status.Reason = "Error"
	}
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
	most := 0
	for _, s := range api.statuses {
		most = max(most, s.Restarts)
	}
	return most
}

// The previous agent saw the container exit, counted the restart
// (Restarts 3, ExitCode and FinishedAt of that exit) and was waiting out
// the back-off when it was restarted (an upgrade). The new agent adopted
// the stopped container and counted the same exit again.
func TestAdoptedExitAlreadyCountedIsNotCountedAgain(t *testing.T) {
	if n := maxRestartsAfterAdopting(t, v1.PhaseBackOff); n != 3 {
		t.Fatalf("one exit, already counted by the previous agent, now gives restarts %d (was 3)", n)
	}
}

// watchRun writes an exit (ExitCode, FinishedAt) in one status write and
// afterExit counts its restart in the next. An agent stopped between the
// two (an upgrade, a crash) left the exit written and its restart not
// counted (phase still Running); the new agent took the matching
// FinishedAt for "counted already" and the restart was lost.
func TestExitWrittenButNotCountedIsCounted(t *testing.T) {
	if n := maxRestartsAfterAdopting(t, v1.PhaseRunning); n != 4 {
		t.Fatalf("an exit whose restart the previous agent never counted (phase still Running): restarts %d, want 4", n)
	}
}

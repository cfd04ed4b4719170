package agent

import (
	"context"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/runtime"
)

// watchRun writes an exit (ExitCode, FinishedAt) in one status write and
// afterExit counts its restart in the next. An agent stopped between the
// two (an upgrade, a crash) left the exit written and its restart not
// counted (phase still Running); the new agent took the matching
// FinishedAt for "counted already" and the restart was lost.
func TestExitWrittenButNotCountedIsCounted(t *testing.T) {
	api := &flakyAPI{}
	rt := &startRuntime{}
	a := agentWithAPI(t, rt, api)
	inst := instanceWith(v1.Health{})
	inst.Spec.Template.RestartPolicy = v1.RestartAlways
	exited := time.Now().Add(-2 * time.Second).UTC()
	started := exited.Add(-time.Minute)
	code := 1
	inst.Status = v1.InstanceStatus{Phase: v1.PhaseRunning, Restarts: 3, ExitCode: &code, FinishedAt: &exited, StartedAt: &started, Node: "n1"}
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
	if max != 4 {
		t.Fatalf("an exit whose restart the previous agent never counted (phase still Running): restarts %d, want 4", max)
	}
}

package agent

import (
	"context"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/runtime"
)

// stopRaceRuntime: the first run fails its liveness check; its Stop ends
// the process at once (the exit reaches the worker) and then takes a
// while to delete the task, as containerd does.
type stopRaceRuntime struct {
	unhealthyFirstRun
	stopping bool // a Stop has not returned yet
	// startedDuringStop and cutShort record what went wrong: a start
	// while the stop was still deleting the task, and a stop whose
	// context ended before its delete was done.
	startedDuringStop, cutShort bool
}

func (f *stopRaceRuntime) Start(context.Context, string) (uint32, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.starts++
	if f.stopping {
		f.startedDuringStop = true
	}
	return 1, nil
}

func (f *stopRaceRuntime) Stop(ctx context.Context, _ string, _ time.Duration) error {
	f.mu.Lock()
	if f.stopping {
		f.mu.Unlock()
		return nil
	}
	f.stopping = true
	f.mu.Unlock()
	f.firstExit <- runtime.Exit{Code: 137, At: time.Now()} // SIGTERM ended it
	time.Sleep(300 * time.Millisecond)                     // the task's delete
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stopping = false
	if ctx.Err() != nil {
		f.cutShort = true
	}
	return nil
}

// When a failed liveness check's SIGTERM ended the process, the run
// ended at once and cancelled the context of the stop, which was still
// deleting the task: containerd kept the task with its shim gone, and the
// container never started again ("create task: already exists"), live
// with every kind of check (review helper-162). The run now ends once the
// stop is done.
func TestACheckStopIsDoneBeforeTheRestart(t *testing.T) {
	rt := &stopRaceRuntime{unhealthyFirstRun: unhealthyFirstRun{firstExit: make(chan runtime.Exit, 1)}}
	_, stop := superviseAdopted(t, rt, failingLiveness())
	deadline := time.Now().Add(10 * time.Second)
	for {
		rt.mu.Lock()
		starts := rt.starts
		rt.mu.Unlock()
		if starts > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(400 * time.Millisecond)
	stop()
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.starts == 0 {
		t.Fatal("the container was not started again after its liveness check failed")
	}
	if rt.startedDuringStop {
		t.Error("the container was started again while the stop was still deleting its task")
	}
	if rt.cutShort {
		t.Error("the stop's context ended before it was done")
	}
}

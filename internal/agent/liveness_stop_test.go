package agent

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/runtime"
)

// unhealthyFirstRun is a Runtime whose adopted first run fails its exec
// checks and ends when the test sends on firstExit; every run started
// after it is healthy and runs on.
type unhealthyFirstRun struct {
	Runtime
	mu        sync.Mutex
	starts    int
	waits     int
	firstExit chan runtime.Exit
}

func (f *unhealthyFirstRun) Wait(context.Context, string) (<-chan runtime.Exit, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.waits++
	if f.waits == 1 {
		return f.firstExit, nil
	}
	return make(chan runtime.Exit), nil
}

func (f *unhealthyFirstRun) Exec(context.Context, string, runtime.ExecOptions) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.starts == 0 {
		return 1, nil // the adopted first run is unhealthy
	}
	return 0, nil
}

// liveRuntime: the first run fails its liveness checks and its Stop
// first fails as unavailable (containerd restarting); that run then
// exits on its own and is restarted; the second run is healthy.
type liveRuntime struct {
	unhealthyFirstRun
	stops []int // starts at the time of each Stop
}

func (f *liveRuntime) Start(context.Context, string) (uint32, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.starts++
	return 1, nil
}

func (f *liveRuntime) Stop(context.Context, string, time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stops = append(f.stops, f.starts)
	if len(f.stops) == 1 {
		return fmt.Errorf("containerd restarting: %w", v1.ErrUnavailable)
	}
	return nil
}

// The goroutine that stops a container whose liveness check failed
// retried on ErrUnavailable for up to a minute with the agent's context,
// not the run's: when that run ended meanwhile and the container was
// restarted, the retry stopped the new, healthy run.
func TestLivenessStopRetryDoesNotStopTheNextRun(t *testing.T) {
	rt := &liveRuntime{unhealthyFirstRun: unhealthyFirstRun{firstExit: make(chan runtime.Exit, 1)}}
	_, stop := superviseAdopted(t, rt, failingLiveness())
	time.Sleep(200 * time.Millisecond)
	rt.firstExit <- runtime.Exit{Code: 1, At: time.Now()} // the first run ends
	time.Sleep(time.Second)
	stop()
	rt.mu.Lock()
	defer rt.mu.Unlock()
	for _, s := range rt.stops {
		if s > 0 {
			t.Fatalf("Stop calls (by starts so far) %v: the healthy run started after the unhealthy one ended was stopped", rt.stops)
		}
	}
}

package agent

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/runtime"
)

// execCall is what fakeRuntime saw of one Exec.
type execCall struct {
	id          string
	cmd         []string
	deadline    time.Time
	hasDeadline bool
}

// fakeRuntime fakes the Exec of a Runtime; every other method panics
// through the nil embedded interface, so a test notices an unexpected
// call.
//
// Exec answers from script, one byte per call: 'p' exits 0, 'f' exits 1
// and 'e' fails to run. Once the script is used up it cancels the context
// the test gave it (if any) and fails, which ends a probe loop without a
// verdict. With exec set, Exec answers by calling it instead.
type fakeRuntime struct {
	Runtime

	mu     sync.Mutex
	script string
	cancel context.CancelFunc
	exec   func(ctx context.Context) (int, error)
	calls  []execCall
}

var errExecBroken = errors.New("exec broken")

func (f *fakeRuntime) Exec(ctx context.Context, id string, opts runtime.ExecOptions) (int, error) {
	f.mu.Lock()
	n := len(f.calls)
	dl, ok := ctx.Deadline()
	f.calls = append(f.calls, execCall{id: id, cmd: opts.Cmd, deadline: dl, hasDeadline: ok})
	exec, script, cancel := f.exec, f.script, f.cancel
	f.mu.Unlock()
	if exec != nil {
		return exec(ctx)
	}
	if n >= len(script) {
		if cancel != nil {
			cancel()
		}
		return -1, errors.New("script used up")
	}
	switch script[n] {
	case 'p':
		return 0, nil
	case 'f':
		return 1, nil
	}
	return 0, errExecBroken
}

func (f *fakeRuntime) execCalls() []execCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]execCall(nil), f.calls...)
}

// superviseAdopted runs a worker of inst over rt, as for a container the
// agent found running after a restart, until the returned stop is called
// (which waits for it to end). api records what the worker reported.
func superviseAdopted(t *testing.T, rt Runtime, inst *v1.Instance) (api *flakyAPI, stop func()) {
	t.Helper()
	api = &flakyAPI{}
	w := newWorker(agentWithAPI(t, rt, api), inst)
	w.ip = net.IPv4(10, 0, 0, 9)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.supervise(ctx, runtime.Container{Status: runtime.StatusRunning})
	}()
	stop = sync.OnceFunc(func() { cancel(); <-done })
	t.Cleanup(stop)
	return api, stop
}

// failingLiveness is an instance whose exec liveness check fails at its
// first run (FailureThreshold 1, every 20ms), restarted always.
func failingLiveness() *v1.Instance {
	probe := &v1.Probe{Exec: &v1.ExecCheck{Command: []string{"true"}}, Period: v1.Duration(20 * time.Millisecond), FailureThreshold: 1}
	inst := instanceWith(v1.Health{Liveness: probe})
	inst.Spec.Template.RestartPolicy = v1.RestartAlways
	return inst
}

package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/network"
	"github.com/gantry-dev/gantry/internal/runtime"
)

// goneRuntime has no container for any instance (gantry down removed
// them), and records every attempt to make one again.
type goneRuntime struct {
	Runtime
	mu    sync.Mutex
	calls []string
}

func (f *goneRuntime) Inspect(context.Context, string) (runtime.Container, error) {
	return runtime.Container{}, fmt.Errorf("%w: no container", v1.ErrNotFound)
}
func (f *goneRuntime) EnsureImage(context.Context, string) (runtime.ImageInfo, error) {
	f.mu.Lock()
	f.calls = append(f.calls, "EnsureImage")
	f.mu.Unlock()
	return runtime.ImageInfo{}, errors.New("test: stop before creating")
}
func (f *goneRuntime) Stop(context.Context, string, time.Duration) error { return nil }
func (f *goneRuntime) Remove(context.Context, string) error              { return nil }

type failNetNS struct{ noNetwork }

func (failNetNS) PrepareNetNS(context.Context, string) (network.NetNS, error) {
	return network.NetNS{}, errors.New("test: no netns")
}

// A finished instance (Succeeded, restart policy never) whose container is
// gone (`gantry down`, then the agent or `gantry up` again) was pulled,
// created and run again: finished work ran twice. It is left as it is.
func TestAFinishedInstanceWithoutItsContainerIsNotRunAgain(t *testing.T) {
	api := &flakyAPI{}
	inst := instanceWith(v1.Health{})
	inst.Spec.Template.RestartPolicy = v1.RestartNever
	fin := time.Now().Add(-time.Hour).UTC()
	code := 0
	inst.Status = v1.InstanceStatus{Phase: v1.PhaseSucceeded, ExitCode: &code, FinishedAt: &fin, Node: "n1"}
	rt := &goneRuntime{}
	a := agentWithAPI(t, rt, api)
	a.net = failNetNS{}
	w := newWorker(a, inst)
	ctx, cancel := context.WithCancel(context.Background())
	go w.run(ctx)
	time.Sleep(700 * time.Millisecond)
	cancel()
	<-w.done
	rt.mu.Lock()
	calls := append([]string(nil), rt.calls...)
	rt.mu.Unlock()
	api.mu.Lock()
	sts := append([]v1.InstanceStatus(nil), api.statuses...)
	api.mu.Unlock()
	var phases []string
	for _, s := range sts {
		phases = append(phases, string(s.Phase))
	}
	if len(calls) > 0 || len(phases) > 0 {
		t.Fatalf("a Succeeded instance (restartPolicy never) with no container is being made again: runtime calls %v, status phases written %v", calls, phases)
	}
}

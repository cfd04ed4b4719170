package agent

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/network"
	"github.com/gantry-dev/gantry/internal/runtime"
)

// stoppedRuntime: Inspect finds the instance's container, stopped.
type stoppedRuntime struct {
	scriptedRuntime
	c runtime.Container
}

func (f *stoppedRuntime) Inspect(context.Context, string) (runtime.Container, error) { return f.c, nil }

// countingSetupNetwork records Setup calls (each a CNI ADD: a new address and
// the host port mappings).
type countingSetupNetwork struct {
	noNetwork
	mu     sync.Mutex
	setups int
}

func (n *countingSetupNetwork) Setup(context.Context, string, []network.PortMapping) (*network.Attachment, error) {
	n.mu.Lock()
	n.setups++
	n.mu.Unlock()
	return &network.Attachment{IP: net.IPv4(10, 77, 0, 50)}, nil
}
func (n *countingSetupNetwork) SetPolicy(context.Context, []network.Member) error   { return nil }
func (n *countingSetupNetwork) CheckPolicy(context.Context, []network.Member) error { return nil }
func (n *countingSetupNetwork) WriteHosts(string, string, net.IP) (string, error)   { return "", nil }

// A finished instance gives its address and host ports back (status IP
// ""), and the scheduler hands those host ports to another instance.
// After an agent restart, the worker adopted the stopped container and
// ran setup on it: a CNI ADD that took a fresh address and mapped the
// same host ports again (colliding with their new holder) before
// afterExit released them once more.
func TestFinishedInstanceIsNotAttachedAgainAfterAnAgentRestart(t *testing.T) {
	api := &flakyAPI{}
	inst := instanceWith(v1.Health{})
	inst.Spec.Template.RestartPolicy = v1.RestartNever
	inst.Spec.Template.Ports = []v1.Port{{Name: "http", Port: 80, HostPort: 8080}}
	fin := time.Now().Add(-time.Hour).UTC()
	code := 0
	inst.Status = v1.InstanceStatus{Phase: v1.PhaseSucceeded, ExitCode: &code, FinishedAt: &fin, Node: "n1"} // IP "": released
	rt := &stoppedRuntime{c: runtime.Container{ID: containerID(inst.Metadata.Key()), Status: runtime.StatusStopped,
		ExitCode: 0, ExitedAt: fin, Labels: map[string]string{labelUID: inst.Metadata.UID}}}
	a := agentWithAPI(t, rt, api)
	nw := &countingSetupNetwork{}
	a.net = nw
	w := newWorker(a, inst)
	ctx, cancel := context.WithCancel(context.Background())
	go w.run(ctx)
	time.Sleep(500 * time.Millisecond)
	cancel()
	<-w.done
	nw.mu.Lock()
	defer nw.mu.Unlock()
	if nw.setups != 0 {
		t.Fatalf("a finished instance whose network was released was attached again %d time(s) after an agent restart (new address, host port 8080 mapped again)", nw.setups)
	}
}

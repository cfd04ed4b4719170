package agent

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// teardownNetwork records teardowns and whether the API had been told
// the instance finished before one.
type teardownNetwork struct {
	noNetwork
	api       *flakyAPI
	mu        sync.Mutex
	teardowns int
	early     bool // the final status was sent before the teardown
}

func (n *teardownNetwork) Teardown(context.Context, string) error {
	n.api.mu.Lock()
	for _, s := range n.api.statuses {
		if s.Phase == v1.PhaseSucceeded || s.Phase == v1.PhaseFailed {
			n.early = true
		}
	}
	n.api.mu.Unlock()
	n.mu.Lock()
	n.teardowns++
	n.mu.Unlock()
	return nil
}

// A finished instance (restart policy never or on-failure) kept its
// address and host ports until it was deleted, which nothing did on its
// own: the port could not be given to another instance. Its network is
// released first now, then its final status says so with no address.
func TestFinishedInstanceReleasesItsNetwork(t *testing.T) {
	for _, policy := range []string{v1.RestartNever, v1.RestartOnFailure} {
		t.Run(policy, func(t *testing.T) {
			api := &flakyAPI{}
			a := agentWithAPI(t, &scriptedRuntime{}, api)
			nw := &teardownNetwork{api: api}
			a.net = nw
			inst := instanceWith(v1.Health{})
			inst.Spec.Template.RestartPolicy = policy
			inst.Status.IP = "10.77.0.9"
			w := newWorker(a, inst)
			w.ip = net.IPv4(10, 77, 0, 9)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan bool, 1)
			crashes := 0
			go func() { done <- w.afterExit(ctx, 0, exitReason(0, ""), time.Now().Add(-time.Minute), &crashes) }()
			deadline := time.Now().Add(5 * time.Second)
			for {
				api.mu.Lock()
				n := len(api.statuses)
				var last v1.InstanceStatus
				if n > 0 {
					last = api.statuses[n-1]
				}
				api.mu.Unlock()
				if n > 0 && last.Phase == v1.PhaseSucceeded {
					if last.IP != "" {
						t.Fatalf("final status still names address %s", last.IP)
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no final status; statuses %+v", api.statuses)
				}
				time.Sleep(10 * time.Millisecond)
			}
			cancel()
			<-done
			nw.mu.Lock()
			defer nw.mu.Unlock()
			if nw.teardowns != 1 || nw.early {
				t.Fatalf("teardowns %d, final status before the teardown %v; want one teardown, before the status", nw.teardowns, nw.early)
			}
			if _, ok := w.member(); ok {
				t.Fatal("the finished instance is still a member of the isolation policy")
			}
		})
	}
}

package controller

import (
	"context"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/informer"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/store/storetest"
)

// A finished instance (restartPolicy never/on-failure) on a node that
// went NotReady was deleted with the node's running ones, though
// docs/guide.md and docs/manifest.md say finished instances stay until
// deleted and "nothing deletes them on its own"; and the rollout
// controller counts them toward replicas, so it made a new one: the
// finished job ran again.
func TestEvictionKeepsFinishedInstances(t *testing.T) {
	s := storetest.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hb := s.Heartbeats("nodes", 2*time.Second)
	n := &v1.Node{TypeMeta: v1.TypeMeta{Kind: "Node"}, Metadata: v1.ObjectMeta{Name: "n1"}}
	n.Status.Ready = true
	if err := s.Create(ctx, n); err != nil {
		t.Fatal(err)
	}
	// No heartbeat: the node is dead from the controller's first look.
	done := &v1.Instance{TypeMeta: v1.TypeMeta{Kind: "Instance"}, Metadata: v1.ObjectMeta{Name: "job-1", Namespace: "default"},
		Spec: v1.InstanceSpec{App: "job", Revision: 1, Node: "n1",
			Template: v1.Template{Image: "busybox", RestartPolicy: v1.RestartNever}},
		Status: v1.InstanceStatus{Phase: v1.PhaseSucceeded, Node: "n1"}}
	running := &v1.Instance{TypeMeta: v1.TypeMeta{Kind: "Instance"}, Metadata: v1.ObjectMeta{Name: "web-1", Namespace: "default"},
		Spec:   v1.InstanceSpec{App: "web", Revision: 1, Node: "n1"},
		Status: v1.InstanceStatus{Phase: v1.PhaseRunning, Node: "n1"}}
	for _, i := range []*v1.Instance{done, running} {
		if err := s.Create(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	insts := informer.New[*v1.Instance](s, quiet)
	go insts.Run(ctx)
	c := &NodeLifecycle{Store: s, Heartbeats: hb, Instances: insts, Recorder: &eventLog{}, Log: quiet, EvictAfter: 100 * time.Millisecond}
	go c.Run(ctx)
	// The running instance is evicted: that is what eviction is for.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := store.Get[*v1.Instance](ctx, s, "default", "web-1"); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("running instance of a dead node not evicted")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	if _, err := store.Get[*v1.Instance](ctx, s, "default", "job-1"); err != nil {
		t.Fatalf("finished instance of a NotReady node was deleted (its App will run it again): %v", err)
	}

	// Its delete asked for after the eviction ran (its App deleted or
	// scaled down: the instance is marked, for its node's agent to
	// finish): the dead node's agent cannot, so it goes. It stayed
	// Terminating for good, as nothing armed another eviction.
	if _, err := store.Mutate(ctx, s, "default", "job-1", func(i *v1.Instance) error {
		now := time.Now().UTC()
		i.Metadata.Deleting = &now
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(5 * time.Second)
	for {
		i, err := store.Get[*v1.Instance](ctx, s, "default", "job-1")
		if err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("5 s after its delete was asked for, the finished instance on dead node n1 is still there (deleting since %v)", i.Metadata.Deleting)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

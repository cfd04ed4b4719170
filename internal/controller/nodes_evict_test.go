package controller

import (
	"context"
	"errors"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/informer"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/store/storetest"
)

// boundInstance stores an instance of App app bound to node, in phase
// (none if empty), marked for deletion if deleting.
func boundInstance(t *testing.T, s *store.Store, name, app, node, phase string, deleting bool) {
	t.Helper()
	ctx := context.Background()
	inst := &v1.Instance{TypeMeta: v1.TypeMeta{Kind: "Instance"}, Metadata: v1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: v1.InstanceSpec{App: app, Revision: 1, Node: node}}
	inst.Status.Phase = phase
	if err := s.Create(ctx, inst); err != nil {
		t.Fatal(err)
	}
	if deleting {
		now := time.Now().UTC()
		if _, err := store.Mutate(ctx, s, "default", name, func(i *v1.Instance) error {
			i.Metadata.Deleting = &now
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
}

func waitGone(t *testing.T, s *store.Store, name, why string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := store.Get[*v1.Instance](context.Background(), s, "default", name)
		if errors.Is(err, v1.ErrNotFound) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: instance %s still there (%v)", why, name, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A finished instance stays, with its logs, until it is deleted; one whose
// delete was asked for (its App deleted or scaled down) on a node that is
// gone for good was kept for ever, marked Deleting: only its node's agent
// could finish the delete.
func TestEvictionRemovesAFinishedInstanceMarkedForDeletion(t *testing.T) {
	s := storetest.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	boundInstance(t, s, "retired", "job", "gone", v1.PhaseSucceeded, true)
	boundInstance(t, s, "kept", "job", "gone", v1.PhaseSucceeded, false)
	insts := informer.New[*v1.Instance](s, quiet)
	go insts.Run(ctx)
	c := &NodeLifecycle{Store: s, Heartbeats: s.Heartbeats("nodes", 2*time.Second), Instances: insts, Recorder: &eventLog{}, Log: quiet, EvictAfter: 200 * time.Millisecond}
	go c.Run(ctx)
	waitGone(t, s, "retired", "a finished instance marked for deletion on a deleted node")
	if _, err := store.Get[*v1.Instance](ctx, s, "default", "kept"); err != nil {
		t.Fatalf("a finished instance nobody deleted was evicted: %v", err)
	}
}

// Each time the heartbeat watch ends, the lifecycle controller lists again
// and looks for instances of nodes that do not exist. That restarted
// their countdown, so a watch failing more often than EvictAfter left
// them bound to the deleted node for good.
func TestOrphanEvictionIsNotPutOffByRelists(t *testing.T) {
	s := storetest.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	boundInstance(t, s, "web-1", "web", "ghost", "", false)
	insts := informer.New[*v1.Instance](s, quiet)
	go insts.Run(ctx)
	<-insts.Synced()
	c := &NodeLifecycle{Store: s, Heartbeats: s.Heartbeats("nodes", 2*time.Second), Instances: insts, Recorder: &eventLog{}, Log: quiet,
		EvictAfter: 500 * time.Millisecond, timers: map[string]*time.Timer{}, verdicts: map[string]verdict{}}
	// What Run does after each failed watch, every 300 ms for 2 s.
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(300 * time.Millisecond) {
		c.evictOrphans(ctx, nil)
	}
	if _, err := store.Get[*v1.Instance](ctx, s, "default", "web-1"); !errors.Is(err, v1.ErrNotFound) {
		t.Fatalf("an instance bound to a deleted node is still there 4 × EvictAfter after it was found: %v", err)
	}
}

// The stored readiness lags the heartbeats: a timer that fires as a
// node's heartbeat returns, before its Ready is written, must not take
// the instances of a node that is alive.
func TestEvictionSparesANodeWhoseHeartbeatCameBack(t *testing.T) {
	s := storetest.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := &v1.Node{TypeMeta: v1.TypeMeta{Kind: "Node"}, Metadata: v1.ObjectMeta{Name: "n1"}}
	if err := s.Create(ctx, n); err != nil {
		t.Fatal(err)
	}
	boundInstance(t, s, "web-1", "web", "n1", v1.PhaseRunning, false)
	insts := informer.New[*v1.Instance](s, quiet)
	go insts.Run(ctx)
	<-insts.Synced()
	c := &NodeLifecycle{Store: s, Heartbeats: s.Heartbeats("nodes", 2*time.Second), Instances: insts, Recorder: &eventLog{}, Log: quiet,
		EvictAfter: time.Hour, timers: map[string]*time.Timer{}, verdicts: map[string]verdict{"n1": {ready: true, gen: 2}}}
	c.evict(ctx, "n1", 0)
	if _, err := store.Get[*v1.Instance](ctx, s, "default", "web-1"); err != nil {
		t.Fatalf("the instance of a node whose heartbeat came back was evicted: %v", err)
	}
	c.verdicts["n1"] = verdict{ready: false, gen: 3}
	c.evict(ctx, "n1", 0)
	waitGone(t, s, "web-1", "a node NotReady by both its record and its heartbeats")
}

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

// Instances bound to a node that no longer exists move as a dead node's
// do: whether the Node is deleted while the controller runs (its lease
// goes with it, and no heartbeat will ever come) or was deleted before
// it started.
func TestInstancesOfADeletedNodeAreEvicted(t *testing.T) {
	for _, tt := range []struct {
		name          string
		deleteBefore  bool // the Node is gone before the controller starts
		bindToMissing bool // the instance names a node that never existed
	}{
		{name: "node deleted while running"},
		{name: "node deleted before start", deleteBefore: true},
		{name: "node never existed", bindToMissing: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := storetest.New(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			hb := s.Heartbeats("nodes", 2*time.Second)
			node := "n1"
			if tt.bindToMissing {
				node = "ghost"
			} else {
				n := &v1.Node{TypeMeta: v1.TypeMeta{Kind: "Node"}, Metadata: v1.ObjectMeta{Name: "n1"}}
				n.Status.Ready = true
				if err := s.Create(ctx, n); err != nil {
					t.Fatal(err)
				}
				if err := hb.Beat(ctx, "n1"); err != nil {
					t.Fatal(err)
				}
			}
			inst := &v1.Instance{TypeMeta: v1.TypeMeta{Kind: "Instance"}, Metadata: v1.ObjectMeta{Name: "web-1", Namespace: "default"},
				Spec: v1.InstanceSpec{App: "web", Revision: 1, Node: node}}
			if err := s.Create(ctx, inst); err != nil {
				t.Fatal(err)
			}
			deleteNode := func() {
				if _, err := s.Delete(ctx, store.KindFor[*v1.Node](), "", "n1", 0); err != nil {
					t.Fatal(err)
				}
				if err := hb.Forget(ctx, "n1"); err != nil {
					t.Fatal(err)
				}
			}
			if tt.deleteBefore {
				deleteNode()
			}
			insts := informer.New[*v1.Instance](s, quiet)
			go insts.Run(ctx)
			c := &NodeLifecycle{Store: s, Heartbeats: hb, Instances: insts, Recorder: &eventLog{}, Log: quiet, EvictAfter: 200 * time.Millisecond}
			go c.Run(ctx)
			if !tt.deleteBefore && !tt.bindToMissing {
				time.Sleep(300 * time.Millisecond) // running, with the node alive
				if _, err := store.Get[*v1.Instance](ctx, s, "default", "web-1"); err != nil {
					t.Fatalf("instance of a live node: %v", err)
				}
				deleteNode()
			}
			deadline := time.Now().Add(5 * time.Second)
			for {
				_, err := store.Get[*v1.Instance](ctx, s, "default", "web-1")
				if errors.Is(err, v1.ErrNotFound) {
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("instance bound to a deleted node still there after 5s (%v)", err)
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}

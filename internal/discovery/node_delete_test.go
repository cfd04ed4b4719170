package discovery_test

import (
	"context"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/store/storetest"
)

// Deleting a Node that is NotReady (its agent is dead) must not put
// the instances still bound to it back into DNS and the load balancer
// while the node controller has yet to evict them.
func TestDeletingANotReadyNodeDoesNotReviveItsInstances(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := storetest.New(t)
	node := &v1.Node{TypeMeta: v1.TypeMeta{Kind: "Node"}, Metadata: v1.ObjectMeta{Name: "dead"}}
	node.Status.Ready = false
	if err := s.Create(ctx, node); err != nil {
		t.Fatal(err)
	}
	createWeb(ctx, t, s, webPort)
	createReadyOn(ctx, t, s, "dead")
	w := startWatcher(ctx, s)
	ready := func() int {
		if svc := w.Current().Service("default", "web"); svc != nil {
			return len(svc.Ready)
		}
		return -1
	}
	for deadline := time.Now().Add(5 * time.Second); ready() != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("instance on the NotReady node served at the start (%d ready)", ready())
		}
	}
	if _, err := s.Delete(ctx, store.KindFor[*v1.Node](), "", "dead", 0); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if n := ready(); n != 0 {
		t.Fatalf("after deleting the NotReady node, %d instance(s) on it are served again", n)
	}
}

// A node deleted while no server ran (the node controller calls the
// instances still bound to it orphans and evicts them after EvictAfter):
// when the server started again, discovery had never seen that node and
// counted it as up, so the dead instances got DNS answers and load
// balancer traffic until the eviction.
func TestInstancesOnANodeDeletedBeforeTheServerStartedAreNotServed(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := storetest.New(t)
	createWeb(ctx, t, s, webPort)
	// Bound to node "dead", which no longer exists in the store.
	createReadyOn(ctx, t, s, "dead")
	w := startWatcher(ctx, s)
	deadline := time.Now().Add(5 * time.Second)
	for w.Current().Service("default", "web") == nil {
		if time.Now().After(deadline) {
			t.Fatal("no snapshot of web")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := len(w.Current().Service("default", "web").Ready); n != 0 {
		t.Fatalf("%d instance(s) bound to a node that does not exist are served", n)
	}
}

// createReadyOn stores a ready instance web-a of App web, bound to node.
func createReadyOn(ctx context.Context, t *testing.T, s *store.Store, node string) {
	t.Helper()
	inst := &v1.Instance{TypeMeta: v1.TypeMeta{Kind: "Instance"}, Metadata: v1.ObjectMeta{Name: "web-a", Namespace: "default"},
		Spec: v1.InstanceSpec{App: "web", Node: node}, Status: v1.InstanceStatus{IP: "10.0.0.2", Ready: true}}
	if err := s.Create(ctx, inst); err != nil {
		t.Fatal(err)
	}
}

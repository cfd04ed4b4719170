package discovery_test

import (
	"context"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/store/storetest"
)

// A node deleted while no server ran (the node controller calls the
// instances still bound to it orphans and evicts them after EvictAfter):
// when the server starts again, discovery has never seen that node and
// counts it as up, so the dead instances get DNS answers and load
// balancer traffic until the eviction.
func TestZZInstancesOnANodeDeletedWhileTheServerWasDownAreNotServed(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := storetest.New(t)
	createWeb(ctx, t, s, webPort)
	// Bound to node "dead", which no longer exists in the store.
	inst := &v1.Instance{TypeMeta: v1.TypeMeta{Kind: "Instance"}, Metadata: v1.ObjectMeta{Name: "web-a", Namespace: "default"},
		Spec: v1.InstanceSpec{App: "web", Node: "dead"}, Status: v1.InstanceStatus{IP: "10.0.0.2", Ready: true}}
	if err := s.Create(ctx, inst); err != nil {
		t.Fatal(err)
	}
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

package discovery_test

import (
	"context"
	"slices"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/store/storetest"
)

// An instance on a node that lost its heartbeat (NotReady) leaves DNS and
// the load balancer at once, not only when the node controller evicts it
// EvictAfter later, and comes back if the node does.
func TestInstancesOnANotReadyNodeLeaveTraffic(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := storetest.New(t)
	for _, n := range []struct {
		name  string
		ready bool
	}{{"dead", false}, {"alive", true}} {
		node := &v1.Node{TypeMeta: v1.TypeMeta{Kind: "Node"}, Metadata: v1.ObjectMeta{Name: n.name}}
		node.Status.Ready = n.ready
		node.Status.Message = "heartbeat lost"
		if err := s.Create(ctx, node); err != nil {
			t.Fatal(err)
		}
	}
	createWeb(ctx, t, s, webPort)
	for _, i := range []struct{ name, node, ip string }{{"web-a", "dead", "10.0.0.2"}, {"web-b", "alive", "10.0.1.2"}} {
		inst := &v1.Instance{TypeMeta: v1.TypeMeta{Kind: "Instance"}, Metadata: v1.ObjectMeta{Name: i.name, Namespace: "default"},
			Spec: v1.InstanceSpec{App: "web", Node: i.node}, Status: v1.InstanceStatus{IP: i.ip, Ready: true}}
		if err := s.Create(ctx, inst); err != nil {
			t.Fatal(err)
		}
	}
	w := startWatcher(ctx, s)
	// served waits until exactly the named instances are ready.
	served := func(step string, want ...string) {
		t.Helper()
		var got []string
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			got = nil
			if svc := w.Current().Service("default", "web"); svc != nil {
				for _, ep := range svc.Ready {
					got = append(got, ep.Instance)
				}
			}
			if slices.Equal(got, want) {
				return
			}
		}
		t.Fatalf("%s: served %v, want %v", step, got, want)
	}
	setReady := func(node string, ready bool) {
		t.Helper()
		if _, err := store.Mutate(ctx, s, "", node, func(n *v1.Node) error { n.Status.Ready = ready; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	served("at the start", "web-b")
	setReady("dead", true)
	served("node dead is back", "web-a", "web-b")
	setReady("alive", false)
	served("node alive stopped answering", "web-a")
}

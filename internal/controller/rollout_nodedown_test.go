package controller

import (
	"context"
	"fmt"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/informer"
	"github.com/gantry-dev/gantry/internal/store"
)

// A new instance whose node has stopped answering (NotReady) still says
// Ready in its status (its agent cannot report otherwise), and discovery
// already keeps it out of traffic. The rollout must not count it as
// available and retire a serving old instance for it: with
// maxUnavailable 0 that once left fewer serving instances than replicas
// (Kubernetes marks the pods of a NotReady node not ready, so its
// Deployment controller does not count them).
func TestNewInstanceOnANotReadyNodeDoesNotRetireAnOldOne(t *testing.T) {
	s, _ := rollToV2OnADownNode(t, 2)
	if n := live(t, s, "web"); n["web:v1"] != 2 {
		t.Fatalf("instances by image %v: a serving v1 instance was retired for a v2 instance on NotReady node n2, which gets no traffic", n)
	}
}

// Once the node answers again, its ready instance counts, and the rollout
// goes on.
func TestNewInstanceCountsAgainWhenItsNodeIsBack(t *testing.T) {
	ctx := context.Background()
	s, r := rollToV2OnADownNode(t, 1)
	if n := live(t, s, "web"); n["web:v1"] != 1 {
		t.Fatalf("instances by image %v with n2 down; want the v1 instance kept", n)
	}
	up, err := store.Mutate(ctx, s, "", "n2", func(n *v1.Node) error { n.Status.Ready = true; return nil })
	if err != nil {
		t.Fatal(err)
	}
	r.Nodes.Observe(up)
	if _, err := r.reconcile(ctx, "default/web"); err != nil {
		t.Fatal(err)
	}
	if n := live(t, s, "web"); n["web:v1"] != 0 || n["web:v2"] != 1 {
		t.Fatalf("instances by image %v with n2 back; want the v1 instance retired for the ready v2 one", n)
	}
}

// rollToV2OnADownNode runs replicas ready v1 instances on n1, applies v2
// (maxSurge 1, maxUnavailable 0), puts its first instance on node n2,
// ready, as n2 stops answering (NotReady), and runs one pass.
func rollToV2OnADownNode(t *testing.T, replicas int) (*store.Store, *Rollout) {
	t.Helper()
	ctx := context.Background()
	s, r, a := runningV1(t, replicas, &eventLog{})
	r.Nodes = informer.New[*v1.Node](s, quiet)
	for k := 0; k < replicas; k++ {
		placeInstance(t, r, a, 1, true) // on n1, which is fine
	}
	down := &v1.Node{TypeMeta: v1.TypeMeta{Kind: "Node"}, Metadata: v1.ObjectMeta{Name: "n2"}, Status: v1.NodeStatus{Ready: false}}
	if err := s.Create(ctx, down); err != nil {
		t.Fatal(err)
	}
	r.Nodes.Observe(down)
	saveApp(t, s, decodeApp(t, fmt.Sprintf("kind: App\nname: web\nimage: web:v2\nreplicas: %d\nstrategy: {maxSurge: 1, maxUnavailable: 0}", replicas)))
	a = storedApp(t, r, "web")
	rev, err := r.revision(ctx, a, 2)
	if err != nil {
		t.Fatal(err)
	}
	i, err := r.createInstance(ctx, a, rev, TemplateHash(rev))
	if err != nil {
		t.Fatal(err)
	}
	out, err := store.Mutate(ctx, s, "default", i.Metadata.Name, func(x *v1.Instance) error {
		x.Spec.Node = "n2"
		x.Status = v1.InstanceStatus{Phase: v1.PhaseRunning, IP: "10.0.1.1", Ready: true}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	r.Instances.Observe(out)
	if _, err := r.reconcile(ctx, "default/web"); err != nil {
		t.Fatal(err)
	}
	return s, r
}

package controller

import (
	"context"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/store/storetest"
)

// scaleTo sets the App's replicas, as gantry scale does.
func scaleTo(t *testing.T, s *store.Store, n int32) {
	t.Helper()
	if _, err := store.Mutate(context.Background(), s, "default", "web", func(a *v1.App) error { a.Spec.Replicas = &n; return nil }); err != nil {
		t.Fatal(err)
	}
}

// A first rollout that missed its deadline is Failed. Scaling it to 0
// (the usual way to stop a broken App) used to count as a finished
// rollout: the failed revision became the stable one, and the next
// broken revision was "rolled back" to it and sat RolledBack on a
// template that never ran.
func TestFailedFirstRolloutScaledToZeroDoesNotBecomeStable(t *testing.T) {
	s := storetest.New(t)
	r := newDetachedRollout(s, &eventLog{})
	pass := stepper(t, r)
	saveApp(t, s, decodeApp(t, "kind: App\nname: web\nimage: web:broken\nreplicas: 1\nstrategy: {progressDeadline: 10s}"))
	a := storedApp(t, r, "web")
	placeInstance(t, r, a, 1, false)
	pass(0)
	a = pass(11 * time.Second)
	if a.Status.Phase != v1.AppFailed {
		t.Fatalf("setup: phase %s (%s), want Failed", a.Status.Phase, a.Status.Message)
	}
	scaleTo(t, s, 0)
	storedApp(t, r, "web")
	pass(time.Second)
	a = pass(time.Second)
	if a.Status.StableRevision != 0 || a.Status.Phase != v1.AppFailed {
		t.Errorf("after scaling the failed first rollout to 0: stableRevision %d, phase %s; want 0 and still Failed (revision 1 never had a ready instance)",
			a.Status.StableRevision, a.Status.Phase)
	}
	saveApp(t, s, decodeApp(t, "kind: App\nname: web\nimage: web:broken2\nreplicas: 1\nstrategy: {progressDeadline: 10s}"))
	a = storedApp(t, r, "web")
	placeInstance(t, r, a, a.Status.Revision, false)
	pass(0)
	a = pass(11 * time.Second)
	if a.Status.RolledBack != nil || a.Status.Phase != v1.AppFailed {
		t.Errorf("revision 2 missed its deadline: phase %s (%s), rolledBack %+v; want Failed, nothing to roll back to",
			a.Status.Phase, a.Status.Message, a.Status.RolledBack)
	}
}

// An App created with 0 replicas has nothing to wait for, but its
// revision proves nothing until it runs: scaled up, the first rollout
// runs with its deadline and becomes stable once its instance is ready.
func TestAppCreatedWithZeroReplicasBecomesStableOnceScaledUp(t *testing.T) {
	s := storetest.New(t)
	r := newDetachedRollout(s, &eventLog{})
	pass := stepper(t, r)
	saveApp(t, s, decodeApp(t, "kind: App\nname: web\nimage: web:v1\nreplicas: 0\nstrategy: {progressDeadline: 10s}"))
	storedApp(t, r, "web")
	a := pass(0)
	if a.Status.Phase != v1.AppRunning || a.Status.StableRevision != 0 {
		t.Fatalf("created with 0 replicas: phase %s, stableRevision %d; want Running, 0", a.Status.Phase, a.Status.StableRevision)
	}
	scaleTo(t, s, 1)
	storedApp(t, r, "web")
	a = pass(time.Minute) // long after its creation: the deadline runs from the scale-up
	if a.Status.Phase != v1.AppProgressing || a.Status.UpdatedReplicas != 1 {
		t.Fatalf("scaled up: phase %s (%s), %d instances; want Progressing with 1", a.Status.Phase, a.Status.Message, a.Status.UpdatedReplicas)
	}
	for _, i := range mustInstances(t, s, "web") {
		bindInstance(t, r, i, true)
	}
	a = pass(time.Second)
	if a.Status.Phase != v1.AppRunning || a.Status.StableRevision != 1 {
		t.Errorf("its instance ready: phase %s (%s), stableRevision %d; want Running, 1", a.Status.Phase, a.Status.Message, a.Status.StableRevision)
	}
}

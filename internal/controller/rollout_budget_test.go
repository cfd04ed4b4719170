package controller

import (
	"context"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/store"
)

// An old instance in back-off is removed "freely", and must not count
// in the budget for removing running-but-unready old instances: before,
// the unready one (a readiness blip) went too although the instances left
// (one old, one new) no longer make the 3 the strategy must keep.
func TestBackOffOldInstanceDoesNotInflateTheUnreadyBudget(t *testing.T) {
	ctx := context.Background()
	s, r, a := runningV1(t, 3, &eventLog{})
	placeInstance(t, r, a, 1, true)
	setPhase := func(i *v1.Instance, phase string) {
		out, err := store.Mutate(ctx, s, "default", i.Metadata.Name, func(x *v1.Instance) error { x.Status.Phase = phase; return nil })
		if err != nil {
			t.Fatal(err)
		}
		r.Instances.Observe(out)
	}
	setPhase(placeInstance(t, r, a, 1, false), v1.PhaseRunning) // readiness blip
	setPhase(placeInstance(t, r, a, 1, false), v1.PhaseBackOff) // crash-looping
	saveApp(t, s, decodeApp(t, "kind: App\nname: web\nimage: web:v2\nreplicas: 3"))
	placeInstance(t, r, storedApp(t, r, "web"), 2, true)
	if _, err := r.reconcile(ctx, "default/web"); err != nil {
		t.Fatal(err)
	}
	if n := live(t, s, "web"); n["web:v1"] != 2 {
		t.Fatalf("instances by image %v, want 2 of v1 left (the ready one and the blipping one)", n)
	}
}

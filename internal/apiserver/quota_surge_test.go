package apiserver_test

import (
	"context"
	"errors"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/store"
)

// Other Apps counted at their replicas only, so the instances a paused
// (or slow) rollout had surged to were free for the Apps written
// meanwhile, and the namespace ran past its quota for as long as the
// pause lasted. An App counts at the instances it runs when they are
// more; finished and deleting instances do not count.
func TestAPausedRolloutsSurgeCountsForOtherApps(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	govNamespace(t, ts, "q", &v1.Quota{Instances: 4})
	c := ts.client(t, ts.Token)
	ctx := context.Background()
	apply := manifestApplier(t, c)
	instance := func(name string, rev int64, phase string) {
		t.Helper()
		r, err := store.Get[*v1.Revision](ctx, ts.Store, "q", v1.RevisionName("a", rev))
		if err != nil {
			t.Fatal(err)
		}
		inst := &v1.Instance{TypeMeta: v1.TypeMeta{Kind: "Instance"}, Metadata: v1.ObjectMeta{Name: name, Namespace: "q", Labels: map[string]string{v1.LabelApp: "a"}},
			Spec: v1.InstanceSpec{App: "a", Revision: rev, Template: r.Spec.Template}, Status: v1.InstanceStatus{Phase: phase}}
		if err := ts.Store.Create(ctx, inst); err != nil {
			t.Fatal(err)
		}
	}
	if err := apply("kind: App\nname: a\nnamespace: q\nimage: x:v1\nreplicas: 2\nstrategy: {maxSurge: 2}\n"); err != nil {
		t.Fatal(err)
	}
	instance("a-1", 1, v1.PhaseRunning)
	instance("a-2", 1, v1.PhaseRunning)
	if err := apply("kind: App\nname: a\nnamespace: q\nimage: x:v2\nreplicas: 2\nstrategy: {maxSurge: 2}\n"); err != nil {
		t.Fatal(err)
	}
	instance("a-3", 2, v1.PhaseRunning) // the rollout's surge
	instance("a-4", 2, v1.PhasePending)
	if _, err := c.Pause(ctx, "q", "a", true); err != nil {
		t.Fatal(err)
	}
	err := apply("kind: App\nname: b\nnamespace: q\nimage: x:v1\nreplicas: 1\n")
	if !errors.Is(err, v1.ErrQuotaExceeded) {
		t.Fatalf("an App of 1 while a runs 4 instances of a quota of 4: %v; want refused", err)
	}
	// A finished instance holds nothing: one of the four done, b fits.
	if _, err := store.Mutate(ctx, ts.Store, "q", "a-1", func(i *v1.Instance) error {
		i.Status.Phase = v1.PhaseSucceeded
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := apply("kind: App\nname: b\nnamespace: q\nimage: x:v1\nreplicas: 1\n"); err != nil {
		t.Fatalf("an App of 1 while a runs 3 instances of a quota of 4: %v", err)
	}
}

package controller

import (
	"context"
	"fmt"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/informer"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/store/storetest"
)

// A pause stops the progress deadline's clock: a rollout paused for
// longer than its deadline is not rolled back the moment it resumes.
func TestResumeRestartsTheProgressDeadline(t *testing.T) {
	s := storetest.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fakeNode(ctx, t, s, func(*v1.Instance) bool { return false })
	rec := &eventLog{}
	startRollout(t, s, rec)
	saveApp(t, s, decodeApp(t, "kind: App\nname: web\nimage: web:v1\nreplicas: 2\nstrategy: {progressDeadline: 1s}"))
	waitApp(t, s, "web", "v1 running", func(a *v1.App, l []*v1.Instance) bool {
		return a.Status.Phase == v1.AppRunning && a.Status.ReadyReplicas == 2
	})
	// rollout pause, then apply v2 (a healthy image).
	if _, err := store.Mutate(ctx, s, "default", "web", func(a *v1.App) error { a.Spec.Paused = true; return nil }); err != nil {
		t.Fatal(err)
	}
	saveApp(t, s, decodeApp(t, "kind: App\nname: web\nimage: web:v2\nreplicas: 2\npaused: true\nstrategy: {progressDeadline: 1s}"))
	waitApp(t, s, "web", "paused on revision 2", func(a *v1.App, l []*v1.Instance) bool {
		return a.Status.Revision == 2 && a.Status.Phase == v1.AppPaused
	})
	time.Sleep(1500 * time.Millisecond) // paused longer than the deadline
	// rollout resume.
	if _, err := store.Mutate(ctx, s, "default", "web", func(a *v1.App) error { a.Spec.Paused = false; return nil }); err != nil {
		t.Fatal(err)
	}
	waitApp(t, s, "web", "v2 running or rolled back", func(a *v1.App, l []*v1.Instance) bool {
		return (a.Status.Phase == v1.AppRunning && a.Status.Revision == 2) || a.Status.RolledBack != nil
	})
	a, _ := store.Get[*v1.App](ctx, s, "default", "web")
	if a.Status.RolledBack != nil {
		t.Fatalf("healthy revision 2 was rolled back right after resume: %+v (events %v)", a.Status.RolledBack, rec.events)
	}
}

// newDetachedRollout returns a Rollout whose informers are not running:
// the test decides what the cache holds, as a lagging watch would.
func newDetachedRollout(s *store.Store, rec Recorder) *Rollout {
	return NewRollout(s, rec, quiet, informer.New[*v1.Instance](s, quiet), informer.New[*v1.App](s, quiet))
}

// The automatic rollback decides from the cached App that revision N
// missed its deadline; if the user applied N+1 meanwhile, N+1 is left
// alone (its own rollout and deadline start now).
func TestAutomaticRollbackLeavesANewerRevision(t *testing.T) {
	s := storetest.New(t)
	ctx := context.Background()
	saveApp(t, s, decodeApp(t, "kind: App\nname: web\nimage: web:v1\nreplicas: 1"))
	if _, err := store.Mutate(ctx, s, "default", "web", func(a *v1.App) error {
		a.Status.Phase, a.Status.StableRevision = v1.AppRunning, 1
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	saveApp(t, s, decodeApp(t, "kind: App\nname: web\nimage: web:broken\nreplicas: 1"))
	// Revision 2 has been rolling out for ten minutes.
	past := time.Now().Add(-10 * time.Minute).UTC()
	stale, err := store.Mutate(ctx, s, "default", "web", func(a *v1.App) error { a.Status.RolloutStarted = &past; return nil })
	if err != nil {
		t.Fatal(err)
	}
	// The user applies a fix, revision 3; the controller's cache still
	// shows revision 2.
	saveApp(t, s, decodeApp(t, "kind: App\nname: web\nimage: web:v3\nreplicas: 1"))
	rec := &eventLog{}
	r := newDetachedRollout(s, rec)
	r.Apps.Observe(stale)
	_, err = r.reconcile(ctx, "default/web")
	if err != nil {
		t.Logf("reconcile: %v", err)
	}
	a, _ := store.Get[*v1.App](ctx, s, "default", "web")
	if a.Status.Revision != 3 || a.Spec.Image != "web:v3" {
		t.Fatalf("revision 3 (applied just now) was replaced: app is at revision %d image %s, rolledBack %+v",
			a.Status.Revision, a.Spec.Image, a.Status.RolledBack)
	}
	if rec.has("ProgressDeadlineExceeded") || rec.has("RolledBack") {
		t.Errorf("events announce a rollback that did not happen: %v", rec.events)
	}
}

// The rollout's status write keeps what the autoscaler wrote after the
// cache the pass read.
func TestStatusWriteKeepsTheAutoscalersFields(t *testing.T) {
	s := storetest.New(t)
	ctx := context.Background()
	saveApp(t, s, decodeApp(t, "kind: App\nname: web\nimage: web:v1\nautoscale: {min: 1, max: 4, targetCPUPercent: 50}"))
	cached, err := store.Get[*v1.App](ctx, s, "default", "web")
	if err != nil {
		t.Fatal(err)
	}
	// The autoscaler decides on 3 replicas.
	if _, err := store.Mutate(ctx, s, "default", "web", func(a *v1.App) error {
		a.Status.AutoscaleReplicas, a.Status.AutoscaleReason = 3, "cpu"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	r := newDetachedRollout(s, &eventLog{})
	r.Apps.Observe(cached)
	if _, err := r.reconcile(ctx, "default/web"); err != nil {
		t.Fatal(err)
	}
	a, _ := store.Get[*v1.App](ctx, s, "default", "web")
	if a.Status.AutoscaleReplicas != 3 {
		t.Fatalf("autoscaler's decision lost: status.autoscaleReplicas = %d, want 3", a.Status.AutoscaleReplicas)
	}
}

// Scaling an App whose rollout is paused resizes the side the pause
// kept running (the old revision) and leaves the new one alone.
func TestScalingAPausedRolloutResizesTheOldSide(t *testing.T) {
	s := storetest.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fakeNode(ctx, t, s, func(*v1.Instance) bool { return false })
	startRollout(t, s, &eventLog{})
	saveApp(t, s, decodeApp(t, "kind: App\nname: web\nimage: web:v1\nreplicas: 2"))
	waitApp(t, s, "web", "v1 running", func(a *v1.App, l []*v1.Instance) bool {
		return a.Status.Phase == v1.AppRunning && a.Status.ReadyReplicas == 2
	})
	saveApp(t, s, decodeApp(t, "kind: App\nname: web\nimage: web:v2\nreplicas: 2\npaused: true"))
	waitApp(t, s, "web", "paused on revision 2", func(a *v1.App, l []*v1.Instance) bool {
		return a.Status.Revision == 2 && a.Status.Phase == v1.AppPaused
	})
	images := func(l []*v1.Instance) map[string]int {
		n := map[string]int{}
		for _, i := range l {
			if i.Metadata.Deleting == nil {
				n[i.Spec.Template.Image]++
			}
		}
		return n
	}
	for _, replicas := range []int{4, 1} {
		saveApp(t, s, decodeApp(t, fmt.Sprintf("kind: App\nname: web\nimage: web:v2\nreplicas: %d\npaused: true", replicas)))
		waitApp(t, s, "web", fmt.Sprintf("%d instances of v1 while paused", replicas), func(a *v1.App, l []*v1.Instance) bool {
			n := images(l)
			return n["web:v1"] == replicas && n["web:v2"] == 0
		})
	}
	// Resumed, the rollout replaces the one v1 instance.
	saveApp(t, s, decodeApp(t, "kind: App\nname: web\nimage: web:v2\nreplicas: 1"))
	waitApp(t, s, "web", "v2 rolled out", func(a *v1.App, l []*v1.Instance) bool {
		n := images(l)
		return a.Status.Phase == v1.AppRunning && n["web:v2"] == 1 && n["web:v1"] == 0
	})
}

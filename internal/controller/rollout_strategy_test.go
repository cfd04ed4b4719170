package controller

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/apps"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/store/storetest"
)

// placeInstance makes an instance of revision n of a, bound to a node and
// running, as the scheduler and an agent would, and puts it in r's cache.
func placeInstance(t *testing.T, r *Rollout, a *v1.App, n int64, ready bool) *v1.Instance {
	t.Helper()
	ctx := context.Background()
	rev, err := r.revision(ctx, a, n)
	if err != nil {
		t.Fatal(err)
	}
	i, err := r.createInstance(ctx, a, rev, TemplateHash(rev))
	if err != nil {
		t.Fatal(err)
	}
	return bindInstance(t, r, i, ready)
}

// bindInstance binds i to a node and makes it running, as the scheduler
// and an agent would, and puts it in r's cache.
func bindInstance(t *testing.T, r *Rollout, i *v1.Instance, ready bool) *v1.Instance {
	t.Helper()
	out, err := store.Mutate(context.Background(), r.store, i.Metadata.Namespace, i.Metadata.Name, func(x *v1.Instance) error {
		x.Spec.Node = "n1"
		x.Status = v1.InstanceStatus{Phase: v1.PhaseRunning, IP: "10.0.0.1", Ready: ready}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	r.Instances.Observe(out)
	return out
}

// storedApp reads the App and puts it in r's cache.
func storedApp(t *testing.T, r *Rollout, name string) *v1.App {
	t.Helper()
	a, err := store.Get[*v1.App](context.Background(), r.store, "default", name)
	if err != nil {
		t.Fatal(err)
	}
	r.Apps.Observe(a)
	return a
}

// markStable records that the App's current revision completed.
func markStable(t *testing.T, s *store.Store, name string) {
	t.Helper()
	if _, err := store.Mutate(context.Background(), s, "default", name, func(a *v1.App) error {
		a.Status.Phase, a.Status.StableRevision = v1.AppRunning, a.Status.Revision
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// runningV1 stores App web, image web:v1 with this many replicas, as a
// completed rollout of revision 1, for a rollout whose informers are not
// running (see newDetachedRollout).
func runningV1(t *testing.T, replicas int, rec Recorder) (*store.Store, *Rollout, *v1.App) {
	t.Helper()
	s := storetest.New(t)
	r := newDetachedRollout(s, rec)
	saveApp(t, s, decodeApp(t, fmt.Sprintf("kind: App\nname: web\nimage: web:v1\nreplicas: %d", replicas)))
	markStable(t, s, "web")
	return s, r, storedApp(t, r, "web")
}

// live counts the instances not marked for deletion, by image.
func live(t *testing.T, s *store.Store, app string) map[string]int {
	t.Helper()
	n := map[string]int{}
	for _, i := range mustInstances(t, s, app) {
		if i.Metadata.Deleting == nil {
			n[i.Spec.Template.Image]++
		}
	}
	return n
}

// Pausing a rollout whose surge instance is not ready yet must not take
// the ready old instance away: the paused App keeps serving.
func TestPausingMidRolloutKeepsTheReadyOldInstances(t *testing.T) {
	ctx := context.Background()
	s, r, a := runningV1(t, 1, &eventLog{})
	placeInstance(t, r, a, 1, true)
	saveApp(t, s, decodeApp(t, "kind: App\nname: web\nimage: web:v2\nreplicas: 1"))
	placeInstance(t, r, storedApp(t, r, "web"), 2, false) // the surge instance, starting
	// rollout pause
	if _, err := store.Mutate(ctx, s, "default", "web", func(a *v1.App) error { a.Spec.Paused = true; return nil }); err != nil {
		t.Fatal(err)
	}
	storedApp(t, r, "web")
	for pass := 0; pass < 3; pass++ {
		if _, err := r.reconcile(ctx, "default/web"); err != nil {
			t.Fatal(err)
		}
	}
	if n := live(t, s, "web"); n["web:v1"] != 1 || n["web:v2"] != 1 {
		t.Fatalf("after the pause: instances by image %v, want the ready v1 and the starting v2 kept", n)
	}
	if a := storedApp(t, r, "web"); a.Status.Phase != v1.AppPaused || a.Status.ReadyReplicas != 1 {
		t.Fatalf("status %s with %d ready, want Paused with 1 ready", a.Status.Phase, a.Status.ReadyReplicas)
	}
}

// Old instances that are not ready go only as far as the strategy's
// availability allows once the new ones are counted: a readiness blip on
// the old side during a rollout must not remove it all.
func TestUnreadyOldInstancesGoWithinTheAvailabilityBudget(t *testing.T) {
	for _, tc := range []struct {
		name        string
		newReady    bool
		unreadyOld  string // phase of the two unready old instances
		wantOldLeft int
	}{
		// 3 wanted, none may be unavailable: the new instance is not
		// ready, so every old one stays.
		{"new instance starting", false, v1.PhaseRunning, 3},
		// Once it is ready, one unready old instance may go (the
		// strategy's surge of one is used up).
		{"new instance ready", true, v1.PhaseRunning, 2},
		// Old instances whose container is not running (crash-looping
		// in back-off) serve nothing and hold their node's capacity:
		// they go at once.
		{"old instances crash-looping", false, v1.PhaseBackOff, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			s, r, a := runningV1(t, 3, &eventLog{})
			placeInstance(t, r, a, 1, true)
			for k := 0; k < 2; k++ {
				i := placeInstance(t, r, a, 1, false)
				out, err := store.Mutate(ctx, s, "default", i.Metadata.Name, func(x *v1.Instance) error {
					x.Status.Phase = tc.unreadyOld
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				r.Instances.Observe(out)
			}
			saveApp(t, s, decodeApp(t, "kind: App\nname: web\nimage: web:v2\nreplicas: 3"))
			placeInstance(t, r, storedApp(t, r, "web"), 2, tc.newReady)
			if _, err := r.reconcile(ctx, "default/web"); err != nil {
				t.Fatal(err)
			}
			if n := live(t, s, "web"); n["web:v1"] != tc.wantOldLeft {
				t.Fatalf("instances by image %v, want %d of v1 left", n, tc.wantOldLeft)
			}
		})
	}
}

// After an automatic rollback the App says RolledBack, with the reason,
// until the restored template runs everywhere; then Running.
func TestRolledBackAppSaysSoUntilTheRollbackCompletes(t *testing.T) {
	for _, tc := range []struct {
		name      string
		v1Ready   int // of 2
		wantPhase string
	}{
		{"restored instances starting", 1, v1.AppRolledBack},
		{"restored instances all ready", 2, v1.AppRunning},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			s, r, a := runningV1(t, 2, &eventLog{})
			for k := 0; k < 2; k++ {
				placeInstance(t, r, a, 1, k < tc.v1Ready)
			}
			saveApp(t, s, decodeApp(t, "kind: App\nname: web\nimage: web:broken\nreplicas: 2"))
			placeInstance(t, r, storedApp(t, r, "web"), 2, false)
			const reason = "revision 2 made no progress for 10m0s"
			if _, _, err := apps.Rollback(ctx, s, "default", "web", apps.RollbackOptions{
				To: 1, From: 2, Cause: "automatic rollback",
				Automatic: &v1.RollbackRecord{From: 2, To: 1, Time: time.Now().UTC(), Reason: reason},
			}); err != nil {
				t.Fatal(err)
			}
			storedApp(t, r, "web")
			if _, err := r.reconcile(ctx, "default/web"); err != nil {
				t.Fatal(err)
			}
			got := storedApp(t, r, "web").Status
			if got.Phase != tc.wantPhase {
				t.Fatalf("phase %s (%q) after one pass, want %s", got.Phase, got.Message, tc.wantPhase)
			}
			if tc.wantPhase == v1.AppRolledBack && !strings.Contains(got.Message, reason) {
				t.Fatalf("message %q does not say why it rolled back", got.Message)
			}
		})
	}
}

// An App deleted and created again under the same name has new
// revisions numbered from 1; the controller must not run the deleted
// App's revision 1 from its cache, even when the watch never showed the
// delete (a relist reports the new App as an update).
func TestRecreatedAppDoesNotRunTheOldRevisions(t *testing.T) {
	s := storetest.New(t)
	ctx := context.Background()
	r := newDetachedRollout(s, &eventLog{})
	saveApp(t, s, decodeApp(t, "kind: App\nname: web\nimage: web:old\nreplicas: 1"))
	storedApp(t, r, "web")
	if _, err := r.reconcile(ctx, "default/web"); err != nil {
		t.Fatal(err)
	}
	// Delete the App, its revision and its instance, behind the cache's back.
	for _, i := range mustInstances(t, s, "web") {
		if _, err := s.Delete(ctx, store.KindFor[*v1.Instance](), "default", i.Metadata.Name, 0); err != nil {
			t.Fatal(err)
		}
		r.Instances.Forget("default", i.Metadata.Name)
	}
	if _, err := s.Delete(ctx, store.KindFor[*v1.Revision](), "default", v1.RevisionName("web", 1), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Delete(ctx, store.KindFor[*v1.App](), "default", "web", 0); err != nil {
		t.Fatal(err)
	}
	saveApp(t, s, decodeApp(t, "kind: App\nname: web\nimage: web:new\nreplicas: 1"))
	storedApp(t, r, "web")
	if _, err := r.reconcile(ctx, "default/web"); err != nil {
		t.Fatal(err)
	}
	if n := live(t, s, "web"); n["web:new"] != 1 || len(n) != 1 {
		t.Fatalf("instances by image %v, want one of web:new", n)
	}
}

// strategy.drainDelay is not part of the template: a change reaches the
// running instances, which drain for it if the App is deleted.
func TestDrainDelayChangeReachesRunningInstances(t *testing.T) {
	s := storetest.New(t)
	ctx := context.Background()
	r := newDetachedRollout(s, &eventLog{})
	saveApp(t, s, decodeApp(t, "kind: App\nname: web\nimage: web:v1\nreplicas: 1\nstrategy: {drainDelay: 2s}"))
	placeInstance(t, r, storedApp(t, r, "web"), 1, true)
	saveApp(t, s, decodeApp(t, "kind: App\nname: web\nimage: web:v1\nreplicas: 1\nstrategy: {drainDelay: 9s}"))
	if a := storedApp(t, r, "web"); a.Status.Revision != 1 {
		t.Fatalf("a drain delay change made revision %d", a.Status.Revision)
	}
	if _, err := r.reconcile(ctx, "default/web"); err != nil {
		t.Fatal(err)
	}
	for _, i := range mustInstances(t, s, "web") {
		if i.Spec.DrainDelay.D() != 9*time.Second {
			t.Fatalf("instance %s keeps drainDelay %s, want 9s", i.Metadata.Name, i.Spec.DrainDelay.D())
		}
	}
}

// An instance the cache shows unplaced may have just been placed: it is
// then drained like any placed instance, not deleted under its agent.
func TestRetiringAJustPlacedInstanceDrainsIt(t *testing.T) {
	s := storetest.New(t)
	ctx := context.Background()
	r := newDetachedRollout(s, &eventLog{})
	saveApp(t, s, decodeApp(t, "kind: App\nname: web\nimage: web:v1\nreplicas: 1"))
	a := storedApp(t, r, "web")
	rev, err := r.revision(ctx, a, 1)
	if err != nil {
		t.Fatal(err)
	}
	cached, err := r.createInstance(ctx, a, rev, TemplateHash(rev))
	if err != nil {
		t.Fatal(err)
	}
	// The scheduler places it; the cache has not heard yet.
	if _, err := store.Mutate(ctx, s, "default", cached.Metadata.Name, func(x *v1.Instance) error {
		x.Spec.Node = "n1"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := r.retire(ctx, cached, v1.Duration(5*time.Second), "test"); err != nil {
		t.Fatal(err)
	}
	got, err := store.Get[*v1.Instance](ctx, s, "default", cached.Metadata.Name)
	if err != nil {
		t.Fatalf("the placed instance was deleted outright: %v", err)
	}
	if got.Metadata.Deleting == nil || got.Spec.DrainDelay.D() != 5*time.Second {
		t.Fatalf("instance not marked to drain for 5s: deleting %v, drainDelay %s", got.Metadata.Deleting, got.Spec.DrainDelay.D())
	}
	// One still unplaced goes at once.
	other, err := r.createInstance(ctx, a, rev, TemplateHash(rev))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.retire(ctx, other, v1.Duration(5*time.Second), "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Get[*v1.Instance](ctx, s, "default", other.Metadata.Name); err == nil {
		t.Fatal("an unplaced instance was kept")
	}
}

// RolloutComplete is announced only once the status saying so is
// written: not when the App moved on to a newer revision meanwhile.
func TestRolloutCompleteOnlyWhenWritten(t *testing.T) {
	ctx := context.Background()
	rec := &eventLog{}
	s, r, _ := runningV1(t, 1, rec)
	saveApp(t, s, decodeApp(t, "kind: App\nname: web\nimage: web:v2\nreplicas: 1"))
	placeInstance(t, r, storedApp(t, r, "web"), 2, true)
	// Revision 3 is applied; the cache still shows revision 2.
	saveApp(t, s, decodeApp(t, "kind: App\nname: web\nimage: web:v3\nreplicas: 1"))
	if _, err := r.reconcile(ctx, "default/web"); err != nil {
		t.Fatal(err)
	}
	if rec.has("RolloutComplete") {
		t.Fatalf("announced a completion that was never recorded: %v", rec.events)
	}
	if a, _ := store.Get[*v1.App](ctx, s, "default", "web"); a.Status.StableRevision != 1 {
		t.Fatalf("stable revision %d, want 1", a.Status.StableRevision)
	}
}

// count counts the events whose reason is reason.
func (e *eventLog) count(reason string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, ev := range e.events {
		if strings.HasPrefix(ev, reason+":") {
			n++
		}
	}
	return n
}

// rollBackToV1 makes the automatic rollback of revision 2 to revision 1
// (as deadlineExceeded does) and returns the App as cached.
func rollBackToV1(t *testing.T, s *store.Store, r *Rollout) *v1.App {
	t.Helper()
	const reason = "revision 2 made no progress for 2m0s"
	if _, _, err := apps.Rollback(context.Background(), s, "default", "web", apps.RollbackOptions{
		To: 1, From: 2, Cause: "automatic rollback",
		Automatic: &v1.RollbackRecord{From: 2, To: 1, Time: time.Now().UTC(), Reason: reason},
	}); err != nil {
		t.Fatal(err)
	}
	return storedApp(t, r, "web")
}

func setPaused(t *testing.T, s *store.Store, r *Rollout, paused bool, replicas int32) *v1.App {
	t.Helper()
	if _, err := store.Mutate(context.Background(), s, "default", "web", func(a *v1.App) error {
		a.Spec.Paused = paused
		if replicas > 0 {
			a.Spec.Replicas = &replicas
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return storedApp(t, r, "web")
}

// A first rollout that misses its deadline is marked Failed once: a pass
// that runs before the watch delivers the write (any status change of the
// crashlooping instances) must not announce it again (each announcement
// is a "deploy failed" notification and a count in the metrics).
func TestFailedFirstRolloutIsAnnouncedOnce(t *testing.T) {
	ctx := context.Background()
	s := storetest.New(t)
	rec := &eventLog{}
	r := newDetachedRollout(s, rec)
	saveApp(t, s, decodeApp(t, "kind: App\nname: web\nimage: web:broken\nreplicas: 1\nstrategy: {progressDeadline: 1s}"))
	past := time.Now().Add(-time.Minute).UTC()
	if _, err := store.Mutate(ctx, s, "default", "web", func(a *v1.App) error { a.Status.RolloutStarted = &past; return nil }); err != nil {
		t.Fatal(err)
	}
	placeInstance(t, r, storedApp(t, r, "web"), 1, false)
	for pass := 0; pass < 2; pass++ {
		if _, err := r.reconcile(ctx, "default/web"); err != nil {
			t.Fatal(err)
		}
	}
	if n := rec.count("ProgressDeadlineExceeded"); n != 1 {
		t.Fatalf("%d ProgressDeadlineExceeded events for one failed rollout, want 1: %v", n, rec.events)
	}
}

// Pausing an App while its automatic rollback is still restoring
// instances, then resuming it, keeps the RolledBack phase and its reason
// until the restored template runs on every instance.
func TestPauseAndResumeDuringARollbackKeepRolledBack(t *testing.T) {
	ctx := context.Background()
	s, r, a := runningV1(t, 2, &eventLog{})
	placeInstance(t, r, a, 1, true)
	placeInstance(t, r, a, 1, false) // restored instance still starting
	saveApp(t, s, decodeApp(t, "kind: App\nname: web\nimage: web:broken\nreplicas: 2"))
	placeInstance(t, r, storedApp(t, r, "web"), 2, false)
	rollBackToV1(t, s, r)
	if _, err := r.reconcile(ctx, "default/web"); err != nil {
		t.Fatal(err)
	}
	if got := storedApp(t, r, "web").Status; got.Phase != v1.AppRolledBack {
		t.Fatalf("phase %s after the rollback, want RolledBack", got.Phase)
	}
	setPaused(t, s, r, true, 0)
	if _, err := r.reconcile(ctx, "default/web"); err != nil {
		t.Fatal(err)
	}
	setPaused(t, s, r, false, 0)
	if _, err := r.reconcile(ctx, "default/web"); err != nil {
		t.Fatal(err)
	}
	got := storedApp(t, r, "web").Status
	if got.Phase != v1.AppRolledBack {
		t.Fatalf("after pause and resume mid-rollback: phase %s (%q), want RolledBack until the restored template runs everywhere", got.Phase, got.Message)
	}
}

// After an automatic rollback the current revision is the working one and
// the old side is what failed: scaling the App up while the rollback is
// paused adds instances of the restored template, not of the revision
// that was rolled back.
func TestScalingAPausedRollbackGrowsTheRestoredTemplate(t *testing.T) {
	ctx := context.Background()
	s, r, a := runningV1(t, 3, &eventLog{})
	placeInstance(t, r, a, 1, true) // the last v1 left
	saveApp(t, s, decodeApp(t, "kind: App\nname: web\nimage: web:v2\nreplicas: 3"))
	a2 := storedApp(t, r, "web")
	placeInstance(t, r, a2, 2, true) // v2 got partly ready...
	placeInstance(t, r, a2, 2, true)
	placeInstance(t, r, a2, 2, false) // ...but one never did: deadline
	rollBackToV1(t, s, r)
	if _, err := r.reconcile(ctx, "default/web"); err != nil {
		t.Fatal(err)
	}
	before := live(t, s, "web")["web:v2"]
	// The user pauses to investigate; the App is scaled up meanwhile.
	setPaused(t, s, r, true, 6)
	if _, err := r.reconcile(ctx, "default/web"); err != nil {
		t.Fatal(err)
	}
	n := live(t, s, "web")
	if n["web:v2"] > before {
		t.Fatalf("scaling the paused rollback up started instances of the rolled-back revision: %d -> %d of web:v2 (all: %v)", before, n["web:v2"], n)
	}
	if n["web:v1"]+n["web:v2"] != 6 {
		t.Fatalf("instances by image %v, want 6 in all", n)
	}
}

// A finished App that is scaled up is Progressing while its new
// instances start, and Degraded only when one of them reports a problem.
func TestScalingUpIsProgressingNotDegraded(t *testing.T) {
	ctx := context.Background()
	s, r, a := runningV1(t, 1, &eventLog{})
	placeInstance(t, r, a, 1, true)
	replicas := int32(2)
	if _, err := store.Mutate(ctx, s, "default", "web", func(a *v1.App) error { a.Spec.Replicas = &replicas; return nil }); err != nil {
		t.Fatal(err)
	}
	storedApp(t, r, "web")
	if _, err := r.reconcile(ctx, "default/web"); err != nil {
		t.Fatal(err)
	}
	if st := storedApp(t, r, "web").Status; st.Phase != v1.AppProgressing || !strings.Contains(st.Message, "scaling to 2") {
		t.Fatalf("while the new instance starts: %s %q, want Progressing, scaling to 2", st.Phase, st.Message)
	}
	// The new instance fails its readiness check.
	for _, i := range mustInstances(t, s, "web") {
		if i.Status.Ready {
			continue
		}
		out, err := store.Mutate(ctx, s, "default", i.Metadata.Name, func(x *v1.Instance) error {
			x.Spec.Node = "n1"
			x.Status = v1.InstanceStatus{Phase: v1.PhaseRunning, Reason: "Unhealthy", Message: "readiness check failing: HTTP 500"}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		r.Instances.Observe(out)
	}
	if _, err := r.reconcile(ctx, "default/web"); err != nil {
		t.Fatal(err)
	}
	if st := storedApp(t, r, "web").Status; st.Phase != v1.AppDegraded || !strings.Contains(st.Message, "readiness check failing") {
		t.Fatalf("with a failing instance: %s %q, want Degraded naming it", st.Phase, st.Message)
	}
}

// A large scale-up is made a batch per pass, each pass reading the App
// again: a scale-down applied in the middle stops it.
func TestAScaleDownStopsALargeScaleUp(t *testing.T) {
	ctx := context.Background()
	s, r, _ := runningV1(t, 1, &eventLog{})
	if _, err := store.Mutate(ctx, s, "default", "web", func(a *v1.App) error { n := int32(1000); a.Spec.Replicas = &n; return nil }); err != nil {
		t.Fatal(err)
	}
	storedApp(t, r, "web")
	if _, err := r.reconcile(ctx, "default/web"); err != nil {
		t.Fatal(err)
	}
	if n := live(t, s, "web")["web:v1"]; n == 0 || n > createsPerPass {
		t.Fatalf("one pass made %d of 1000 instances, want 1 to %d", n, createsPerPass)
	}
	if _, err := store.Mutate(ctx, s, "default", "web", func(a *v1.App) error { n := int32(0); a.Spec.Replicas = &n; return nil }); err != nil {
		t.Fatal(err)
	}
	storedApp(t, r, "web")
	if _, err := r.reconcile(ctx, "default/web"); err != nil {
		t.Fatal(err)
	}
	if n := live(t, s, "web"); len(n) != 0 {
		t.Fatalf("after scaling to 0: instances by image %v, want none", n)
	}
}

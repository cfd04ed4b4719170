package controller

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/store/storetest"
)

// setReady changes an instance's readiness, as its agent would, and puts
// it in r's cache.
func setReady(t *testing.T, r *Rollout, i *v1.Instance, ready bool) *v1.Instance {
	t.Helper()
	out, err := store.Mutate(context.Background(), r.store, i.Metadata.Namespace, i.Metadata.Name, func(x *v1.Instance) error {
		x.Status.Ready = ready
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	r.Instances.Observe(out)
	return out
}

// stepper returns a function that moves r's clock on and runs a pass for
// App web, returning the App as stored after it.
func stepper(t *testing.T, r *Rollout) func(after time.Duration) *v1.App {
	clock := time.Now()
	r.now = func() time.Time { return clock }
	return func(after time.Duration) *v1.App {
		t.Helper()
		clock = clock.Add(after)
		if _, err := r.reconcile(context.Background(), "default/web"); err != nil {
			t.Fatal(err)
		}
		return storedApp(t, r, "web")
	}
}

// A new instance whose readiness comes and goes is not progress each
// time it comes back: the deadline runs from the first time it was
// ready, and the rollout is rolled back when it passes.
func TestFlappingReadinessDoesNotHoldOffTheDeadline(t *testing.T) {
	s := storetest.New(t)
	rec := &eventLog{}
	r := newDetachedRollout(s, rec)
	pass := stepper(t, r)
	saveApp(t, s, decodeApp(t, "kind: App\nname: web\nimage: web:v1\nreplicas: 2\nstrategy: {progressDeadline: 10s}"))
	markStable(t, s, "web")
	a := storedApp(t, r, "web")
	placeInstance(t, r, a, 1, true)
	placeInstance(t, r, a, 1, true)
	saveApp(t, s, decodeApp(t, "kind: App\nname: web\nimage: web:v2\nreplicas: 2\nstrategy: {progressDeadline: 10s}"))
	a = storedApp(t, r, "web")
	flappy := placeInstance(t, r, a, 2, false)
	pass(0)
	flappy = setReady(t, r, flappy, true)
	pass(4 * time.Second) // first ready: progress
	flappy = setReady(t, r, flappy, false)
	pass(3 * time.Second)
	setReady(t, r, flappy, true)
	pass(3 * time.Second) // ready again: no higher than before
	a = pass(5 * time.Second)
	// 11 s after the last real progress, 8 s after it flapped back.
	if a.Status.RolledBack == nil || !rec.has("ProgressDeadlineExceeded") {
		t.Fatalf("phase %s (%s), rolledBack %+v, events %v: a revision whose one ready instance flaps was not rolled back at its deadline",
			a.Status.Phase, a.Status.Message, a.Status.RolledBack, rec.events)
	}
}

// Scaling to zero in the middle of a rollout (to stop a bad one) ends
// the wait, but the revision that never ran does not become the one
// rollbacks go to; scaled up again, its deadline runs from then.
func TestScaledToZeroMidRolloutKeepsTheStableRevision(t *testing.T) {
	ctx := context.Background()
	s, r, a := runningV1(t, 1, &eventLog{})
	placeInstance(t, r, a, 1, true)
	saveApp(t, s, decodeApp(t, "kind: App\nname: web\nimage: web:broken\nreplicas: 1"))
	placeInstance(t, r, storedApp(t, r, "web"), 2, false)
	saveApp(t, s, decodeApp(t, "kind: App\nname: web\nimage: web:broken\nreplicas: 0"))
	storedApp(t, r, "web")
	for range 3 {
		if _, err := r.reconcile(ctx, "default/web"); err != nil {
			t.Fatal(err)
		}
		storedApp(t, r, "web")
		for _, i := range mustInstances(t, s, "web") {
			if i.Metadata.Deleting != nil {
				// The agents finish the drain.
				if _, err := s.Delete(ctx, store.KindFor[*v1.Instance](), "default", i.Metadata.Name, 0); err != nil {
					t.Fatal(err)
				}
				r.Instances.Forget("default", i.Metadata.Name)
			}
		}
	}
	a = storedApp(t, r, "web")
	if a.Status.Revision != 2 || a.Status.StableRevision != 1 || a.Status.Phase != v1.AppRunning {
		t.Fatalf("scaled to 0 mid-rollout: revision %d, stable %d, phase %s (%s); want revision 2 running, stable still 1",
			a.Status.Revision, a.Status.StableRevision, a.Status.Phase, a.Status.Message)
	}
}

// brokenPastItsDeadline sets up App web: revision 1 ran, revision 2's
// one instance has not got ready in the ten minutes since it was applied.
func brokenPastItsDeadline(t *testing.T) *Rollout {
	t.Helper()
	s, r, a := runningV1(t, 1, &eventLog{})
	placeInstance(t, r, a, 1, true)
	saveApp(t, s, decodeApp(t, "kind: App\nname: web\nimage: web:broken\nreplicas: 1"))
	past := time.Now().Add(-10 * time.Minute).UTC()
	if _, err := store.Mutate(context.Background(), s, "default", "web", func(a *v1.App) error { a.Status.RolloutStarted = &past; return nil }); err != nil {
		t.Fatal(err)
	}
	placeInstance(t, r, storedApp(t, r, "web"), 2, false)
	return r
}

// An automatic rollback goes through the same admission as one asked for:
// a template the namespace's policy has since forbidden does not come
// back by itself, and the App says why it stays on the failing revision.
func TestAutomaticRollbackIsAdmitted(t *testing.T) {
	ctx := context.Background()
	r := brokenPastItsDeadline(t)
	var asked []string
	r.Admit = func(_ context.Context, a, prev *v1.App) error {
		asked = append(asked, a.Spec.Image+" over "+prev.Spec.Image)
		return fmt.Errorf("%w: hostNetwork is not allowed in namespace default", v1.ErrForbidden)
	}
	if _, err := r.reconcile(ctx, "default/web"); err != nil {
		t.Fatal(err)
	}
	a := storedApp(t, r, "web")
	if len(asked) != 1 || asked[0] != "web:v1 over web:broken" {
		t.Fatalf("admission asked %v, want once for web:v1 over web:broken", asked)
	}
	if a.Status.Revision != 2 || a.Status.RolledBack != nil || a.Status.Phase != v1.AppFailed ||
		!strings.Contains(a.Status.Message, "rollback to revision 1 was refused") || !strings.Contains(a.Status.Message, "hostNetwork") {
		t.Fatalf("revision %d, phase %s (%s), rolledBack %+v; want revision 2 Failed, saying the rollback was refused and why",
			a.Status.Revision, a.Status.Phase, a.Status.Message, a.Status.RolledBack)
	}
}

// A rollout past its deadline whose last working revision is gone from
// the history fails saying so, rather than claiming it runs that
// template already.
func TestAutomaticRollbackToARevisionThatIsGone(t *testing.T) {
	ctx := context.Background()
	r := brokenPastItsDeadline(t)
	if _, err := r.store.Delete(ctx, store.KindFor[*v1.Revision](), "default", v1.RevisionName("web", 1), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := r.reconcile(ctx, "default/web"); err != nil {
		t.Fatal(err)
	}
	a := storedApp(t, r, "web")
	if a.Status.Revision != 2 || a.Status.Phase != v1.AppFailed || !strings.Contains(a.Status.Message, "revision 1, the last working one, is gone from the history") {
		t.Fatalf("revision %d, phase %s (%s); want revision 2 Failed, saying revision 1 is gone", a.Status.Revision, a.Status.Phase, a.Status.Message)
	}
}

// Outside a rollout, an App that does not come closer to its replicas
// for a whole progress deadline (a scale-up with no room) is Degraded
// and Stalled, so that `rollout status` can stop waiting; progress
// clears it.
func TestAScaleUpThatMakesNoProgressStalls(t *testing.T) {
	s := storetest.New(t)
	r := newDetachedRollout(s, &eventLog{})
	pass := stepper(t, r)
	saveApp(t, s, decodeApp(t, "kind: App\nname: web\nimage: web:v1\nreplicas: 1\nstrategy: {progressDeadline: 10s}"))
	a := storedApp(t, r, "web")
	placeInstance(t, r, a, 1, true)
	if a = pass(time.Second); a.Status.Phase != v1.AppRunning || a.Status.StableRevision != 1 {
		t.Fatalf("phase %s, stable %d; want the first rollout complete", a.Status.Phase, a.Status.StableRevision)
	}
	saveApp(t, s, decodeApp(t, "kind: App\nname: web\nimage: web:v1\nreplicas: 2\nstrategy: {progressDeadline: 10s}"))
	storedApp(t, r, "web")
	if a = pass(time.Second); a.Status.Phase != v1.AppProgressing || a.Status.Stalled {
		t.Fatalf("scaling up: phase %s stalled %v (%s); want Progressing", a.Status.Phase, a.Status.Stalled, a.Status.Message)
	}
	// The second instance is never placed (no room).
	if a = pass(5 * time.Second); a.Status.Stalled {
		t.Fatalf("stalled after 5 s of a 10 s deadline: %s", a.Status.Message)
	}
	a = pass(6 * time.Second)
	if a.Status.Phase != v1.AppDegraded || !a.Status.Stalled || !strings.Contains(a.Status.Message, "no progress for 10s") {
		t.Fatalf("11 s into a scale-up without progress: phase %s stalled %v (%s); want Degraded and stalled", a.Status.Phase, a.Status.Stalled, a.Status.Message)
	}
	// Scaled again: the stall was about the other count.
	saveApp(t, s, decodeApp(t, "kind: App\nname: web\nimage: web:v1\nreplicas: 3\nstrategy: {progressDeadline: 10s}"))
	storedApp(t, r, "web")
	if a = pass(time.Second); a.Status.Stalled || a.Status.Phase != v1.AppProgressing || a.Status.ObservedReplicas != 3 {
		t.Fatalf("scaled to 3 while stalled at 2: phase %s stalled %v observed %d (%s); want Progressing toward 3, not stalled",
			a.Status.Phase, a.Status.Stalled, a.Status.ObservedReplicas, a.Status.Message)
	}
	// Room appears: the instances run and get ready.
	for _, i := range mustInstances(t, s, "web") {
		if i.Spec.Node == "" {
			bindInstance(t, r, i, true)
		}
	}
	if a = pass(time.Second); a.Status.Phase != v1.AppRunning || a.Status.Stalled {
		t.Fatalf("after the instance got ready: phase %s stalled %v (%s); want Running", a.Status.Phase, a.Status.Stalled, a.Status.Message)
	}
}

// An App that lost instances and gets them back one by one is making
// progress, not stalled, though it never goes above its earlier count.
func TestRecoveringInstancesAreProgress(t *testing.T) {
	s := storetest.New(t)
	r := newDetachedRollout(s, &eventLog{})
	pass := stepper(t, r)
	saveApp(t, s, decodeApp(t, "kind: App\nname: web\nimage: web:v1\nreplicas: 3\nstrategy: {progressDeadline: 10s}"))
	a := storedApp(t, r, "web")
	var insts []*v1.Instance
	for range 3 {
		insts = append(insts, placeInstance(t, r, a, 1, true))
	}
	if a = pass(time.Second); a.Status.Phase != v1.AppRunning {
		t.Fatalf("phase %s (%s), want Running", a.Status.Phase, a.Status.Message)
	}
	setReady(t, r, insts[1], false)
	setReady(t, r, insts[2], false)
	pass(0)
	setReady(t, r, insts[1], true)
	pass(8 * time.Second) // one back: progress
	if a = pass(8 * time.Second); a.Status.Stalled {
		t.Fatalf("stalled 8 s after an instance came back, with a 10 s deadline: %s", a.Status.Message)
	}
	setReady(t, r, insts[2], true)
	if a = pass(time.Second); a.Status.Phase != v1.AppRunning || a.Status.Stalled {
		t.Fatalf("all back: phase %s stalled %v (%s)", a.Status.Phase, a.Status.Stalled, a.Status.Message)
	}
}

// Admission that cannot decide (the store is away) is not a refusal: the
// pass fails and is retried, and the App is not marked Failed.
func TestAdmissionFailureIsRetriedNotARefusal(t *testing.T) {
	ctx := context.Background()
	r := brokenPastItsDeadline(t)
	r.Admit = func(context.Context, *v1.App, *v1.App) error {
		return fmt.Errorf("list quotas: %w", v1.ErrUnavailable)
	}
	if _, err := r.reconcile(ctx, "default/web"); err == nil {
		t.Fatal("the pass succeeded although admission could not decide")
	}
	if a := storedApp(t, r, "web"); a.Status.Phase == v1.AppFailed || a.Status.RolledBack != nil {
		t.Fatalf("phase %s (%s), rolledBack %+v; want neither Failed nor rolled back yet", a.Status.Phase, a.Status.Message, a.Status.RolledBack)
	}
	r.Admit = nil // the store is back
	if _, err := r.reconcile(ctx, "default/web"); err != nil {
		t.Fatal(err)
	}
	if a := storedApp(t, r, "web"); a.Status.RolledBack == nil {
		t.Fatalf("phase %s (%s): not rolled back once admission could decide", a.Status.Phase, a.Status.Message)
	}
}

// readyFrom makes i ready since r's now, or not ready, as its agent
// would report it, and puts it in r's cache.
func readyFrom(t *testing.T, r *Rollout, i *v1.Instance, ready bool) *v1.Instance {
	t.Helper()
	if !ready {
		return readyAgo(t, r, i, -1)
	}
	return readyAgo(t, r, i, 0)
}

// readyAgo makes i ready since this long before r's now (not ready if
// negative), as its agent reported it and the controller saw it then,
// and puts it in r's cache.
func readyAgo(t *testing.T, r *Rollout, i *v1.Instance, ago time.Duration) *v1.Instance {
	t.Helper()
	out, err := store.Mutate(context.Background(), r.store, i.Metadata.Namespace, i.Metadata.Name, func(x *v1.Instance) error {
		x.Status.Ready, x.Status.ReadySince = ago >= 0, nil
		if ago >= 0 {
			since := r.now().Add(-ago).UTC()
			x.Status.ReadySince = &since
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	r.Instances.Observe(out)
	if since := out.Status.ReadySince; since != nil {
		r.spellMu.Lock()
		r.spells[out.Metadata.UID] = spell{since: *since, seen: *since}
		r.spellMu.Unlock()
	}
	return out
}

// With strategy.minReady a new instance must stay ready that long, in
// one spell, before an old one is retired for it and before the rollout
// is complete; the controller comes back by itself when the time is up.
func TestMinReadyHoldsTheOldInstanceUntilTheNewOneHasProvedItself(t *testing.T) {
	s := storetest.New(t)
	r := newDetachedRollout(s, &eventLog{})
	pass := stepper(t, r)
	const spec = "kind: App\nname: web\nimage: web:%s\nreplicas: 1\nstrategy: {minReady: 10s, progressDeadline: 60s}"
	saveApp(t, s, decodeApp(t, fmt.Sprintf(spec, "v1")))
	markStable(t, s, "web")
	readyAgo(t, r, placeInstance(t, r, storedApp(t, r, "web"), 1, false), time.Minute)
	pass(0)
	saveApp(t, s, decodeApp(t, fmt.Sprintf(spec, "v2")))
	storedApp(t, r, "web")
	pass(0) // the surge instance
	var v2 *v1.Instance
	for _, i := range mustInstances(t, s, "web") {
		if i.Spec.Revision == 2 {
			v2 = bindInstance(t, r, i, false)
		}
	}
	if v2 == nil {
		t.Fatal("no instance of revision 2 was made")
	}
	v2 = readyFrom(t, r, v2, true)
	requeue, err := r.reconcile(context.Background(), "default/web")
	if err != nil {
		t.Fatal(err)
	}
	if requeue <= 0 || requeue > 10*time.Second+time.Second {
		t.Errorf("requeue after %s, want about 10s (when the new instance becomes available)", requeue)
	}
	check := func(a *v1.App, when string, wantV1 int, phase string) {
		t.Helper()
		if n := live(t, s, "web"); n["web:v1"] != wantV1 {
			t.Fatalf("%s: instances by image %v, want %d of web:v1", when, n, wantV1)
		}
		if a.Status.Phase != phase {
			t.Fatalf("%s: phase %s (%s), want %s", when, a.Status.Phase, a.Status.Message, phase)
		}
	}
	a := pass(4 * time.Second)
	check(a, "ready for 4s", 1, v1.AppProgressing)
	if !strings.Contains(a.Status.Message, "1 of them not yet for minReady 10s") || a.Status.UpdatedReady != 1 || a.Status.UpdatedAvailable != 0 || a.Status.AvailableReplicas != 1 {
		t.Fatalf("ready for 4s: status %+v", a.Status)
	}
	// A break in readiness starts the wait again.
	v2 = readyFrom(t, r, v2, false)
	pass(time.Second)
	readyFrom(t, r, v2, true)
	check(pass(7*time.Second), "12s after it was first ready, 7s in its second spell", 1, v1.AppProgressing)
	a = pass(3 * time.Second)
	check(a, "10s into its second spell", 0, v1.AppRunning)
	if a.Status.StableRevision != 2 || a.Status.AvailableReplicas != 1 || a.Status.UpdatedAvailable != 1 {
		t.Fatalf("complete: status %+v", a.Status)
	}
}

// An instance becoming available is progress: with a minReady close to
// the progress deadline, each step of a rollout takes minReady plus the
// next instance's start, and a healthy rollout must not be rolled back
// for it.
func TestBecomingAvailableIsProgress(t *testing.T) {
	s := storetest.New(t)
	rec := &eventLog{}
	r := newDetachedRollout(s, rec)
	pass := stepper(t, r)
	const spec = "kind: App\nname: web\nimage: web:%s\nreplicas: 2\nstrategy: {maxSurge: 1, maxUnavailable: 0, minReady: 50s, progressDeadline: 60s}"
	saveApp(t, s, decodeApp(t, fmt.Sprintf(spec, "v1")))
	markStable(t, s, "web")
	a := storedApp(t, r, "web")
	readyAgo(t, r, placeInstance(t, r, a, 1, false), time.Hour)
	readyAgo(t, r, placeInstance(t, r, a, 1, false), time.Hour)
	pass(0)
	saveApp(t, s, decodeApp(t, fmt.Sprintf(spec, "v2")))
	storedApp(t, r, "web")
	// next binds the newest instance of revision 2 not yet placed.
	next := func() *v1.Instance {
		t.Helper()
		for _, i := range mustInstances(t, s, "web") {
			if i.Spec.Revision == 2 && i.Spec.Node == "" {
				return bindInstance(t, r, i, false)
			}
		}
		t.Fatal("no unplaced instance of revision 2")
		return nil
	}
	pass(0)
	readyFrom(t, r, next(), true)
	pass(time.Second)      // t=1s: ready, progress
	pass(50 * time.Second) // t=51s: available, progress; an old one goes
	pass(0)                // and the second new one is made
	if n := live(t, s, "web"); n["web:v1"] != 1 || n["web:v2"] != 2 {
		t.Fatalf("after the first new instance was available: instances by image %v", n)
	}
	second := next()
	a = pass(11 * time.Second) // t=62s: 11s since it became available, 61s since it was ready
	if a.Status.RolledBack != nil || a.Status.Phase != v1.AppProgressing {
		t.Fatalf("phase %s (%s), rolledBack %+v: a rollout that progresses every minReady was rolled back", a.Status.Phase, a.Status.Message, a.Status.RolledBack)
	}
	readyFrom(t, r, second, true)
	pass(time.Second)
	if a = pass(50 * time.Second); a.Status.Phase != v1.AppRunning || a.Status.StableRevision != 2 {
		t.Fatalf("phase %s (%s), stable revision %d: want the rollout complete", a.Status.Phase, a.Status.Message, a.Status.StableRevision)
	}
}

// minReady is measured on the controller's clock when it saw the spell
// of readiness begin, whatever the node's clock said: a node whose clock
// is an hour behind makes no instance available at once, and one an hour
// ahead does not hold it off for an hour.
func TestMinReadyIsMeasuredOnTheControllersClock(t *testing.T) {
	for _, skew := range []time.Duration{-time.Hour, time.Hour} {
		t.Run(fmt.Sprintf("node clock %s", skew), func(t *testing.T) {
			_, r, a := runningV1(t, 1, &eventLog{})
			s := r.store
			pass := stepper(t, r)
			readyAgo(t, r, placeInstance(t, r, a, 1, false), time.Hour)
			pass(0)
			saveApp(t, s, decodeApp(t, "kind: App\nname: web\nimage: web:v2\nreplicas: 1\nstrategy: {minReady: 10s}"))
			storedApp(t, r, "web")
			pass(0)
			var v2 *v1.Instance
			for _, i := range mustInstances(t, s, "web") {
				if i.Spec.Revision == 2 {
					v2 = bindInstance(t, r, i, false)
				}
			}
			// The agent reports it ready, stamped by its own clock; the
			// watch delivers the change.
			ready := readyFrom(t, r, v2, true)
			node := r.now().Add(skew).UTC()
			ready.Status.ReadySince = &node
			r.Instances.Observe(ready)
			r.noteSpell(v2, ready, false)
			if n := live(t, s, "web"); n["web:v1"] != 1 {
				t.Fatalf("instances by image %v before any pass", n)
			}
			// The cache holds the skewed status; the store is only read
			// through it.
			a = pass(5 * time.Second)
			if n := live(t, s, "web"); n["web:v1"] != 1 {
				t.Fatalf("5s after it was seen ready: instances by image %v (phase %s, %s): the old one went before minReady", n, a.Status.Phase, a.Status.Message)
			}
			if a = pass(5 * time.Second); a.Status.Phase != v1.AppRunning {
				t.Fatalf("10s after it was seen ready: phase %s (%s), want the rollout complete", a.Status.Phase, a.Status.Message)
			}
		})
	}
}

package controller

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/store/storetest"
)

// finishingNode runs every instance placed on it to completion at once
// (exit 0), as a node does a batch program's.
func finishingNode(ctx context.Context, s *store.Store) {
	nodeFor(ctx, s, func(i *v1.Instance) {
		if i.Status.Phase == v1.PhaseSucceeded {
			return
		}
		store.Mutate(ctx, s, i.Metadata.Namespace, i.Metadata.Name, func(x *v1.Instance) error {
			if x.Status.Phase == v1.PhaseSucceeded {
				return store.ErrUnchanged
			}
			code, now := 0, time.Now().UTC()
			x.Spec.Node = "n1"
			x.Status = v1.InstanceStatus{Phase: v1.PhaseSucceeded, Reason: "Completed", Message: "exited with code 0; restart policy on-failure", ExitCode: &code, FinishedAt: &now}
			return nil
		})
	})
}

// An App whose restart policy is not always and whose instances all ran
// to completion showed Degraded and, after its progress deadline,
// stalled; a rollout of a new revision that ran to completion too was
// rolled back for making no progress (review helper-162). Such an App is
// Completed now.
func TestAnAppWhoseInstancesAllSucceededIsCompleted(t *testing.T) {
	s := storetest.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	finishingNode(ctx, s)
	rec := &eventLog{}
	startRollout(t, s, rec)
	saveApp(t, s, decodeApp(t, "kind: App\nname: job\nimage: job:v1\nreplicas: 2\nrestartPolicy: on-failure\nstrategy: {progressDeadline: 1s}"))
	waitApp(t, s, "job", "revision 1 completed", func(a *v1.App, l []*v1.Instance) bool {
		return a.Status.Phase == v1.AppCompleted && a.Status.StableRevision == 1
	})
	saveApp(t, s, decodeApp(t, "kind: App\nname: job\nimage: job:v2\nreplicas: 2\nrestartPolicy: on-failure\nstrategy: {progressDeadline: 1s}"))
	waitApp(t, s, "job", "revision 2 completed", func(a *v1.App, l []*v1.Instance) bool {
		return a.Status.Phase == v1.AppCompleted && a.Status.StableRevision == 2
	})
	time.Sleep(1500 * time.Millisecond) // past the progress deadline
	a, err := store.Get[*v1.App](ctx, s, "default", "job")
	if err != nil {
		t.Fatal(err)
	}
	if a.Status.Phase != v1.AppCompleted || a.Status.Stalled || a.Status.RolledBack != nil || a.Status.Revision != 2 {
		t.Errorf("after the deadline: phase %s stalled %v rolledBack %+v revision %d; want Completed at revision 2", a.Status.Phase, a.Status.Stalled, a.Status.RolledBack, a.Status.Revision)
	}
	if rec.has("ProgressDeadlineExceeded") || rec.has("RolledBack") {
		t.Errorf("events: %v", rec.events)
	}
}

// A first rollout that failed its deadline was declared complete, with a
// RolloutComplete event and its revision made the stable one, when its
// crash-looping instances happened to be ready at the same moment
// (review helper-164). It recovers only once they have stayed ready for
// a while (review helper-167: never recovering was wrong too: a Secret
// created late, a slow pull).
func TestAFailedFirstRolloutRecoversOnlyWhenItsInstancesStayReady(t *testing.T) {
	saved := failedRecovery
	failedRecovery = time.Second
	t.Cleanup(func() { failedRecovery = saved })
	s := storetest.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fakeNode(ctx, t, s, func(*v1.Instance) bool { return true })
	rec := &eventLog{}
	startRollout(t, s, rec)
	saveApp(t, s, decodeApp(t, "kind: App\nname: web\nimage: web:crash\nreplicas: 2\nstrategy: {progressDeadline: 1s}"))
	waitApp(t, s, "web", "the first rollout failed", func(a *v1.App, l []*v1.Instance) bool {
		return a.Status.Phase == v1.AppFailed
	})
	setReady := func(ready bool) {
		t.Helper()
		l, _, err := store.List[*v1.Instance](ctx, s, store.ListOptions{Namespace: "default"})
		if err != nil {
			t.Fatal(err)
		}
		for _, i := range l {
			if _, err := store.Mutate(ctx, s, "default", i.Metadata.Name, func(x *v1.Instance) error {
				now := time.Now().UTC()
				x.Status.Ready, x.Status.Reason, x.Status.Message, x.Status.ReadySince = ready, "", "", &now
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Both instances look ready for a moment, then crash again.
	setReady(true)
	time.Sleep(300 * time.Millisecond)
	setReady(false)
	time.Sleep(1500 * time.Millisecond)
	a, err := store.Get[*v1.App](ctx, s, "default", "web")
	if err != nil {
		t.Fatal(err)
	}
	if a.Status.Phase != v1.AppFailed || a.Status.StableRevision != 0 || rec.has("RolloutComplete") {
		t.Fatalf("after a moment of readiness: phase %s, stable revision %d, events %v; want it still Failed", a.Status.Phase, a.Status.StableRevision, rec.events)
	}
	// Now they stay ready (the cause went away): it recovers.
	setReady(true)
	waitApp(t, s, "web", "recovered", func(a *v1.App, l []*v1.Instance) bool {
		return a.Status.Phase == v1.AppRunning && a.Status.StableRevision == 1
	})
}

// staggeredNode runs, of each template's instances, the first to
// completion at once and the others (ready meanwhile) for long first.
func staggeredNode(ctx context.Context, s *store.Store, long time.Duration) {
	var mu sync.Mutex
	seen := map[string]int{}
	handled := map[string]bool{}
	succeed := func(name string) {
		store.Mutate(ctx, s, "default", name, func(x *v1.Instance) error {
			code, now := 0, time.Now().UTC()
			x.Spec.Node = "n1"
			x.Status = v1.InstanceStatus{Phase: v1.PhaseSucceeded, Reason: "Completed", Message: "exited with code 0; restart policy never", ExitCode: &code, FinishedAt: &now}
			return nil
		})
	}
	nodeFor(ctx, s, func(i *v1.Instance) {
		mu.Lock()
		first, done := seen[i.Metadata.Labels[LabelTemplateHash]] == 0, handled[i.Metadata.UID]
		if !done {
			handled[i.Metadata.UID] = true
			seen[i.Metadata.Labels[LabelTemplateHash]]++
		}
		mu.Unlock()
		switch {
		case done:
		case first:
			succeed(i.Metadata.Name)
		default:
			store.Mutate(ctx, s, "default", i.Metadata.Name, func(x *v1.Instance) error {
				now := time.Now().UTC()
				x.Spec.Node = "n1"
				x.Status = v1.InstanceStatus{Phase: v1.PhaseRunning, Ready: true, ReadySince: &now, StartedAt: &now}
				return nil
			})
			name := i.Metadata.Name
			time.AfterFunc(long, func() { succeed(name) })
		}
	})
}

// Instances of a batch App that end at different times: one had
// succeeded while another ran on past the progress deadline, and the
// first rollout failed, a later one was rolled back (which ran the old
// work again), blaming "exited with code 0" (review helper-165). An
// instance that has done its work counts as one that is ready.
func TestABatchRolloutWhoseInstancesEndAtDifferentTimes(t *testing.T) {
	s := storetest.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	staggeredNode(ctx, s, 2*time.Second)
	rec := &eventLog{}
	startRollout(t, s, rec)
	const app = "kind: App\nname: job\nimage: job:%s\nreplicas: 2\nrestartPolicy: never\nstrategy: {progressDeadline: 1s}"
	saveApp(t, s, decodeApp(t, fmt.Sprintf(app, "v1")))
	waitApp(t, s, "job", "revision 1 completed", func(a *v1.App, l []*v1.Instance) bool {
		return a.Status.Phase == v1.AppCompleted || a.Status.Phase == v1.AppFailed
	})
	if a, _ := store.Get[*v1.App](ctx, s, "default", "job"); a.Status.Phase != v1.AppCompleted {
		t.Fatalf("revision 1: %s (%s), want Completed", a.Status.Phase, a.Status.Message)
	}
	saveApp(t, s, decodeApp(t, fmt.Sprintf(app, "v2")))
	waitApp(t, s, "job", "revision 2 completed", func(a *v1.App, l []*v1.Instance) bool {
		return a.Status.Revision == 2 && a.Status.Phase == v1.AppCompleted || a.Status.RolledBack != nil
	})
	a, _ := store.Get[*v1.App](ctx, s, "default", "job")
	if a.Status.RolledBack != nil || a.Status.StableRevision != 2 || rec.has("ProgressDeadlineExceeded") {
		t.Errorf("revision 2: phase %s stable %d rolledBack %+v events %v; want Completed at 2", a.Status.Phase, a.Status.StableRevision, a.Status.RolledBack, rec.events)
	}
}

// A batch rollout over old instances still at work: the new ones ran to
// completion, but retiring the old ones waited for new instances
// "available", which a finished one never was, and the rollout was rolled
// back (review helper-167). A finished new instance counts as available.
func TestABatchRolloutOverRunningOldInstances(t *testing.T) {
	s := storetest.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	v1Hash := ""
	nodeFor(ctx, s, func(i *v1.Instance) {
		if i.Spec.Node != "" {
			return
		}
		mu.Lock()
		if v1Hash == "" {
			v1Hash = i.Metadata.Labels[LabelTemplateHash]
		}
		old := i.Metadata.Labels[LabelTemplateHash] == v1Hash
		mu.Unlock()
		store.Mutate(ctx, s, "default", i.Metadata.Name, func(x *v1.Instance) error {
			now := time.Now().UTC()
			x.Spec.Node = "n1"
			if old { // still at work
				x.Status = v1.InstanceStatus{Phase: v1.PhaseRunning, Ready: true, ReadySince: &now, StartedAt: &now}
			} else {
				code := 0
				x.Status = v1.InstanceStatus{Phase: v1.PhaseSucceeded, Reason: "Completed", ExitCode: &code, FinishedAt: &now}
			}
			return nil
		})
	})
	rec := &eventLog{}
	startRollout(t, s, rec)
	const app = "kind: App\nname: job\nimage: job:%s\nreplicas: 2\nrestartPolicy: on-failure\nstrategy: {progressDeadline: 1s}"
	saveApp(t, s, decodeApp(t, fmt.Sprintf(app, "v1")))
	waitApp(t, s, "job", "revision 1 running", func(a *v1.App, l []*v1.Instance) bool {
		return a.Status.Phase == v1.AppRunning && a.Status.StableRevision == 1
	})
	saveApp(t, s, decodeApp(t, fmt.Sprintf(app, "v2")))
	waitApp(t, s, "job", "revision 2 completed", func(a *v1.App, l []*v1.Instance) bool {
		return a.Status.Revision == 2 && a.Status.Phase == v1.AppCompleted || a.Status.RolledBack != nil
	})
	if a, _ := store.Get[*v1.App](ctx, s, "default", "job"); a.Status.RolledBack != nil {
		t.Errorf("the batch rollout was rolled back: %+v (events %v)", a.Status.RolledBack, rec.events)
	}
}

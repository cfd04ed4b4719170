package controller

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/apps"
	"github.com/gantry-dev/gantry/internal/informer"
	"github.com/gantry-dev/gantry/internal/metrics"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/store/storetest"
)

type eventLog struct {
	mu     sync.Mutex
	events []string
}

func (e *eventLog) Eventf(ctx context.Context, obj v1.Object, typ, reason, format string, args ...any) {
	e.mu.Lock()
	e.events = append(e.events, reason+": "+fmt.Sprintf(format, args...))
	e.mu.Unlock()
}

func (e *eventLog) has(reason string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ev := range e.events {
		if len(ev) >= len(reason) && ev[:len(reason)] == reason {
			return true
		}
	}
	return false
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func decodeApp(t *testing.T, doc string) *v1.App {
	t.Helper()
	o, err := v1.DecodeManifest([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return o.(*v1.App)
}

// saveApp applies a as the API server does, reading the stored App and
// trying again when the controller's status write got in between.
func saveApp(t *testing.T, s *store.Store, a *v1.App) {
	t.Helper()
	ctx := context.Background()
	for attempt := 0; ; attempt++ {
		prev, err := store.Get[*v1.App](ctx, s, a.Metadata.Namespace, a.Metadata.Name)
		if err != nil {
			prev = nil
		}
		_, err = apps.Save(ctx, s, apps.Change{App: a, Prev: prev})
		if errors.Is(err, v1.ErrConflict) && attempt < 10 {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		return
	}
}

// fakeNode plays the part of the scheduler and an agent: it binds every
// instance and marks it running and ready (unless unready says not), and
// deletes instances marked for deletion, as an agent would after draining.
func fakeNode(ctx context.Context, t *testing.T, s *store.Store, unready func(*v1.Instance) bool) {
	nodeFor(ctx, s, func(i *v1.Instance) {
		if i.Spec.Node == "" || i.Status.Phase != v1.PhaseRunning {
			store.Mutate(ctx, s, i.Metadata.Namespace, i.Metadata.Name, func(x *v1.Instance) error {
				if x.Spec.Node != "" && x.Status.Phase == v1.PhaseRunning {
					return store.ErrUnchanged
				}
				x.Spec.Node = "n1"
				x.Status = v1.InstanceStatus{Phase: v1.PhaseRunning, IP: "10.0.0.1", Ready: !unready(x)}
				if !x.Status.Ready {
					x.Status.Message = "readiness check failing: HTTP 500"
					x.Status.Reason = "Unhealthy"
				}
				return nil
			})
		}
	})
}

// nodeFor plays a node for the tests: it deletes every instance marked
// for deletion, as an agent does once it has stopped it, and hands every
// other instance written to handle, until ctx ends.
func nodeFor(ctx context.Context, s *store.Store, handle func(*v1.Instance)) {
	k := store.KindFor[*v1.Instance]()
	go func() {
		for ev := range s.Watch(ctx, k, store.WatchOptions{}) {
			if ev.Type == store.Error || ev.Object == nil || ev.Type == store.Deleted {
				continue
			}
			i := ev.Object.(*v1.Instance)
			if i.Metadata.Deleting != nil {
				s.Delete(ctx, k, i.Metadata.Namespace, i.Metadata.Name, 0)
				continue
			}
			handle(i)
		}
	}()
}

func startRollout(t *testing.T, s *store.Store, rec Recorder) *Rollout {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	r := NewRollout(s, rec, quiet, nil, nil)
	go r.Run(ctx, 2)
	return r
}

func waitApp(t *testing.T, s *store.Store, name string, what string, ok func(*v1.App, []*v1.Instance) bool) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		a, err := store.Get[*v1.App](ctx, s, "default", name)
		if err == nil {
			insts, _, _ := store.List[*v1.Instance](ctx, s, store.ListOptions{Namespace: "default"})
			var mine []*v1.Instance
			for _, i := range insts {
				if i.Spec.App == name {
					mine = append(mine, i)
				}
			}
			if ok(a, mine) {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	a, _ := store.Get[*v1.App](ctx, s, "default", name)
	t.Fatalf("timed out waiting for %s; app status %+v", what, a.Status)
}

func TestRolloutReplacesInstancesWithinSurge(t *testing.T) {
	s := storetest.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fakeNode(ctx, t, s, func(*v1.Instance) bool { return false })
	rec := &eventLog{}
	startRollout(t, s, rec)
	saveApp(t, s, decodeApp(t, "kind: App\nname: web\nimage: web:v1\nreplicas: 4\nstrategy: {maxSurge: 1, maxUnavailable: 0}"))
	waitApp(t, s, "web", "4 ready on revision 1", func(a *v1.App, l []*v1.Instance) bool {
		return a.Status.Phase == v1.AppRunning && a.Status.ReadyReplicas == 4 && len(l) == 4
	})

	// Watch the rollout to v2: never more than 5 instances, never fewer
	// than 4 ready.
	var mu sync.Mutex
	maxTotal, minReady := 0, 100
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			insts, _, _ := store.List[*v1.Instance](ctx, s, store.ListOptions{Namespace: "default"})
			total, ready := 0, 0
			for _, i := range insts {
				if i.Metadata.Deleting == nil {
					total++
					if i.Status.Ready {
						ready++
					}
				}
			}
			mu.Lock()
			maxTotal, minReady = max(maxTotal, total), min(minReady, ready)
			mu.Unlock()
			time.Sleep(2 * time.Millisecond)
		}
	}()
	saveApp(t, s, decodeApp(t, "kind: App\nname: web\nimage: web:v2\nreplicas: 4\nstrategy: {maxSurge: 1, maxUnavailable: 0}"))
	waitApp(t, s, "web", "4 ready on revision 2", func(a *v1.App, l []*v1.Instance) bool {
		if a.Status.Phase != v1.AppRunning || a.Status.Revision != 2 || len(l) != 4 {
			return false
		}
		for _, i := range l {
			if i.Spec.Revision != 2 {
				return false
			}
		}
		return true
	})
	close(stop)
	mu.Lock()
	defer mu.Unlock()
	if maxTotal > 5 {
		t.Errorf("saw %d instances at once; maxSurge 1 allows 5", maxTotal)
	}
	if minReady < 4 {
		t.Errorf("saw only %d ready instances; maxUnavailable 0 needs 4", minReady)
	}
	if !rec.has("RolloutComplete") {
		t.Error("no RolloutComplete event")
	}
}

func TestRolloutRollsBackWhenNewRevisionNeverReady(t *testing.T) {
	s := storetest.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fakeNode(ctx, t, s, func(i *v1.Instance) bool { return i.Spec.Template.Image == "web:broken" })
	rec := &eventLog{}
	startRollout(t, s, rec)
	saveApp(t, s, decodeApp(t, "kind: App\nname: web\nimage: web:v1\nreplicas: 2\nstrategy: {progressDeadline: 1s}"))
	waitApp(t, s, "web", "v1 running", func(a *v1.App, l []*v1.Instance) bool { return a.Status.Phase == v1.AppRunning })
	var v1Names []string
	for _, i := range mustInstances(t, s, "web") {
		v1Names = append(v1Names, i.Metadata.Name)
	}
	saveApp(t, s, decodeApp(t, "kind: App\nname: web\nimage: web:broken\nreplicas: 2\nstrategy: {progressDeadline: 1s}"))
	waitApp(t, s, "web", "automatic rollback", func(a *v1.App, l []*v1.Instance) bool {
		return a.Status.RolledBack != nil && a.Status.RolledBack.From == 2 && a.Status.RolledBack.To == 1 && a.Status.Revision == 3 && a.Spec.Image == "web:v1"
	})
	// The rollback keeps the instances of v1 that never stopped serving.
	waitApp(t, s, "web", "running again on the old instances", func(a *v1.App, l []*v1.Instance) bool {
		if a.Status.Phase != v1.AppRunning || len(l) != 2 {
			return false
		}
		for _, i := range l {
			if i.Spec.Template.Image != "web:v1" {
				return false
			}
		}
		return true
	})
	after := map[string]bool{}
	for _, i := range mustInstances(t, s, "web") {
		after[i.Metadata.Name] = true
	}
	for _, n := range v1Names {
		if !after[n] {
			t.Errorf("v1 instance %s was replaced by the rollback; it should have been kept", n)
		}
	}
	if !rec.has("RolledBack") || !rec.has("ProgressDeadlineExceeded") {
		t.Errorf("events: %v", rec.events)
	}
	// The rollback's revision is written whole, record and all, and is
	// announced as a rollback only, not as a rollout of a changed
	// template.
	a, err := store.Get[*v1.App](ctx, s, "default", "web")
	if err != nil {
		t.Fatal(err)
	}
	if rb := a.Status.RolledBack; rb.Revision != 3 || a.Status.StableRevision != 3 {
		t.Errorf("after the rollback: rolledBack %+v, stableRevision %d; want both at revision 3", rb, a.Status.StableRevision)
	}
	if rec.has("RolloutStarted: rolling out revision 3") {
		t.Errorf("the automatic rollback was announced as a new rollout: %v", rec.events)
	}
}

func mustInstances(t *testing.T, s *store.Store, app string) []*v1.Instance {
	t.Helper()
	l, _, err := store.List[*v1.Instance](context.Background(), s, store.ListOptions{Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	var out []*v1.Instance
	for _, i := range l {
		if i.Spec.App == app && i.Metadata.Deleting == nil {
			out = append(out, i)
		}
	}
	return out
}

func TestDeletedAppInstancesAreRetired(t *testing.T) {
	s := storetest.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fakeNode(ctx, t, s, func(*v1.Instance) bool { return false })
	startRollout(t, s, &eventLog{})
	saveApp(t, s, decodeApp(t, "kind: App\nname: gone\nimage: x:v1\nreplicas: 3\nstrategy: {drainDelay: 7s}"))
	waitApp(t, s, "gone", "running", func(a *v1.App, l []*v1.Instance) bool { return a.Status.Phase == v1.AppRunning })
	// What the agents are told to drain for, seen as each instance is
	// marked for deletion.
	var mu sync.Mutex
	drains := map[string]v1.Duration{}
	go func() {
		for ev := range s.Watch(ctx, store.KindFor[*v1.Instance](), store.WatchOptions{}) {
			if i, ok := ev.Object.(*v1.Instance); ok && i.Metadata.Deleting != nil {
				mu.Lock()
				drains[i.Metadata.Name] = i.Spec.DrainDelay
				mu.Unlock()
			}
		}
	}()
	time.Sleep(50 * time.Millisecond) // let the watch start
	if _, err := apps.Delete(ctx, s, "default", "gone", 0); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		l, _, _ := store.List[*v1.Instance](ctx, s, store.ListOptions{Namespace: "default"})
		if len(l) == 0 {
			mu.Lock()
			defer mu.Unlock()
			if len(drains) != 3 {
				t.Fatalf("saw %d of 3 instances marked for deletion: %v", len(drains), drains)
			}
			for name, d := range drains {
				if d != v1.Duration(7*time.Second) {
					t.Errorf("instance %s of the deleted app drains for %s; want the app's drainDelay 7s", name, d.D())
				}
			}
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("instances of a deleted app were not removed")
}

func TestAutoscalerScalesUpAtOnceAndDownAfterStabilization(t *testing.T) {
	s := storetest.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := decodeApp(t, "kind: App\nname: burn\nimage: x:v1\nresources: {cpu: 100m}\nautoscale: {min: 1, max: 4, targetCPUPercent: 50}")
	saveApp(t, s, a)
	// No rollout runs here: mark the first rollout done, as the rollout
	// controller would.
	if _, err := store.Mutate(ctx, s, "default", "burn", func(x *v1.App) error { x.Status.Phase = v1.AppRunning; return nil }); err != nil {
		t.Fatal(err)
	}
	appInf := informer.New[*v1.App](s, quiet)
	go appInf.Run(ctx)
	w := metrics.NewWindow(time.Hour, time.Second)
	now := time.Unix(2_000_000, 0)
	clock := func() time.Time { return now }
	rec := &eventLog{}
	as := &Autoscaler{Store: s, Apps: appInf, Window: w, Recorder: rec, Log: quiet, Now: clock,
		Lookback: 10 * time.Second, DownStabilization: 30 * time.Second, Interval: time.Hour}
	as.recs = map[string][]recommendation{}
	as.Tolerance = 0.1
	<-appInf.Synced()
	feed := func(instances int, cpuEach float64) {
		for i := 0; i < 5; i++ {
			now = now.Add(time.Second)
			r := metrics.Report{Node: metrics.NodeSample{Node: "n1", Point: metrics.Point{Time: now}}}
			for k := 0; k < instances; k++ {
				r.Instances = append(r.Instances, metrics.InstanceSample{Namespace: "default", Name: fmt.Sprintf("burn-%d", k), App: "burn", CPULimit: 0.1,
					Point: metrics.Point{Time: now, CPU: cpuEach}})
			}
			w.Add(r)
		}
	}
	step := func() int32 {
		t.Helper()
		cur, _ := store.Get[*v1.App](ctx, s, "default", "burn")
		if err := as.evaluate(ctx, cur); err != nil {
			t.Fatal(err)
		}
		cur, _ = store.Get[*v1.App](ctx, s, "default", "burn")
		return cur.DesiredReplicas()
	}
	// One instance burning a whole request (100% of 100m, target 50%):
	// double.
	feed(1, 0.1)
	if got := step(); got != 2 {
		t.Fatalf("after 100%% load: %d replicas, want 2", got)
	}
	feed(2, 0.1)
	if got := step(); got != 4 {
		t.Fatalf("after sustained load: %d replicas, want 4 (max)", got)
	}
	// Load stops: no scale-down until the stabilization window passes.
	feed(4, 0.001)
	if got := step(); got != 4 {
		t.Fatalf("scaled down to %d at once; must wait for stabilization", got)
	}
	for i := 0; i < 7; i++ {
		feed(4, 0.001)
		step()
	}
	if got := step(); got != 1 {
		t.Fatalf("after the stabilization window: %d replicas, want 1 (min)", got)
	}
	if !rec.has("Scaled") {
		t.Error("no Scaled event")
	}
}

// The autoscaler leaves an App whose rollout is in progress alone (except
// to reach min), but not one that is Progressing only because it is
// scaling on its stable revision: load that keeps growing while new
// instances start gets more of them.
func TestAutoscalerWaitsForRolloutsNotForScaling(t *testing.T) {
	for _, tc := range []struct {
		name   string
		stable int64
		want   int32
	}{
		{"scaling on the stable revision", 1, 4},
		{"rollout of revision 1 in progress", 0, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := storetest.New(t)
			ctx := context.Background()
			saveApp(t, s, decodeApp(t, "kind: App\nname: burn\nimage: x:v1\nresources: {cpu: 100m}\nautoscale: {min: 1, max: 4, targetCPUPercent: 50}"))
			a, err := store.Mutate(ctx, s, "default", "burn", func(x *v1.App) error {
				x.Status.Phase, x.Status.StableRevision, x.Status.AutoscaleReplicas = v1.AppProgressing, tc.stable, 2
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			w := metrics.NewWindow(time.Hour, time.Second)
			now := time.Unix(2_000_000, 0)
			for i := 0; i < 5; i++ {
				now = now.Add(time.Second)
				r := metrics.Report{Node: metrics.NodeSample{Node: "n1", Point: metrics.Point{Time: now}}}
				for k := 0; k < 2; k++ {
					r.Instances = append(r.Instances, metrics.InstanceSample{Namespace: "default", Name: fmt.Sprintf("burn-%d", k), App: "burn", CPULimit: 0.1,
						Point: metrics.Point{Time: now, CPU: 0.1}})
				}
				w.Add(r)
			}
			as := &Autoscaler{Store: s, Apps: informer.New[*v1.App](s, quiet), Window: w, Recorder: &eventLog{}, Log: quiet,
				Now: func() time.Time { return now }, Lookback: 10 * time.Second, DownStabilization: 30 * time.Second, Interval: time.Hour,
				Tolerance: 0.1, recs: map[string][]recommendation{}}
			if err := as.evaluate(ctx, a); err != nil {
				t.Fatal(err)
			}
			got, _ := store.Get[*v1.App](ctx, s, "default", "burn")
			if n := got.DesiredReplicas(); n != tc.want {
				t.Fatalf("%d replicas, want %d", n, tc.want)
			}
		})
	}
}

// The revision cache forgets what the App's history no longer keeps,
// except the stable revision.
func TestRevisionCacheTrimmed(t *testing.T) {
	r := NewRollout(storetest.New(t), nil, quiet, nil, nil)
	a := decodeApp(t, "kind: App\nname: web\nimage: a\nrevisionHistoryLimit: 2")
	v1.SetDefaults(a)
	a.Metadata.UID = "u1"
	r.revs["u1"] = map[int64]*v1.Revision{}
	for n := int64(1); n <= 6; n++ {
		r.revs["u1"][n] = &v1.Revision{}
	}
	a.Status.Revision, a.Status.StableRevision = 6, 1
	r.trimRevisions(a)
	var kept []int64
	for n := range r.revs["u1"] {
		kept = append(kept, n)
	}
	slices.Sort(kept)
	if want := []int64{1, 4, 5, 6}; !slices.Equal(kept, want) {
		t.Errorf("cached revisions = %v, want %v", kept, want)
	}
}

package scheduler

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/store/storetest"
)

// These tests run the scheduler loop against a real embedded etcd through
// the real store.

func TestSchedulerBindsPendingInstances(t *testing.T) {
	st := storetest.New(t)
	create(t, st, newNode("n1", 4000, 8*gi), newNode("n2", 4000, 8*gi))
	// One instance exists before the scheduler starts (found by its list),
	// the others arrive while it runs (found by its watch).
	create(t, st, newInstance("early", "web", 100, 128*mi))
	events := &eventLog{}
	sched := startScheduler(t, st, events)
	bound := waitInstance(t, st, "early", isBound)
	if bound.Status.Node != bound.Spec.Node || bound.Status.Phase != v1.PhasePending || bound.Status.Reason != ReasonScheduled {
		t.Errorf("bound instance status %+v, want node %s, phase Pending, reason Scheduled", bound.Status, bound.Spec.Node)
	}

	// A watch that starts at the current revision delivers at once (one
	// that starts in the past is caught up by etcd only every 100 ms), so
	// this measures the scheduler, not the test's watch.
	wctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	watch := st.Watch(wctx, instanceKind, store.WatchOptions{Namespace: "default"})
	var worst time.Duration
	for i := range 5 {
		name := fmt.Sprintf("late-%d", i)
		start := time.Now()
		create(t, st, newInstance(name, "web", 100, 128*mi))
		for ev := range watch {
			if ev.Type == store.Error {
				t.Fatal(ev.Err)
			}
			if ev.Object.GetMeta().Name == name && isBound(ev.Object.(*v1.Instance)) {
				break
			}
		}
		worst = max(worst, time.Since(start))
	}
	if wctx.Err() != nil {
		t.Fatal("instances were not bound in time")
	}
	t.Logf("create to bound, seen through a watch: worst of 5 was %v", worst)
	if worst > 2*time.Second {
		t.Errorf("binding took %v; the scheduler should bind as soon as it sees an instance", worst)
	}
	sched.stop()
	t.Logf("scheduler's own share: place %s, place+bind committed %s (means over 6)",
		histogramMean(t, sched.m.PlaceSeconds), histogramMean(t, sched.m.BindSeconds))
	if got := counterValue(t, sched.m.Attempts.WithLabelValues(resultScheduled)); got != 6 {
		t.Errorf("scheduled attempts = %v, want 6", got)
	}
	if got := events.count(ReasonScheduled); got != 6 {
		t.Errorf("%d Scheduled events, want 6: %v", got, events.all())
	}
}

func TestSchedulerLeavesWhatDoesNotFitPendingAndRetries(t *testing.T) {
	st := storetest.New(t)
	create(t, st, newNode("small", 4000, gi))
	events := &eventLog{}
	sched := startScheduler(t, st, events)
	create(t, st, newInstance("a", "web", 100, 512*mi))
	waitInstance(t, st, "a", isBound)
	create(t, st, newInstance("b", "web", 100, 512*mi))
	waitInstance(t, st, "b", isBound)
	create(t, st, newInstance("c", "web", 100, 512*mi))

	const want = "0/1 nodes available: 1 insufficient memory (need 512Mi, most free 0)"
	c := waitInstance(t, st, "c", isUnschedulable)
	if c.Spec.Node != "" || c.Status.Phase != v1.PhasePending || c.Status.Message != want {
		t.Errorf("extra instance: node %q phase %q message %q; want unbound, Pending, %q", c.Spec.Node, c.Status.Phase, c.Status.Message, want)
	}

	// An instance that finishes gives its memory back; the waiting one
	// takes it without anyone touching it.
	if _, err := store.Mutate(t.Context(), st, "default", "a", func(i *v1.Instance) error {
		i.Status.Phase = v1.PhaseFailed
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	c = waitInstance(t, st, "c", isBound)
	if c.Spec.Node != "small" || c.Status.Reason != ReasonScheduled {
		t.Errorf("after room was made: node %q reason %q, want small, Scheduled", c.Spec.Node, c.Status.Reason)
	}
	sched.stop()
	if got := events.messages(ReasonFailedScheduling); len(got) != 1 || got[0] != want {
		t.Errorf("FailedScheduling events %q, want one saying %q", got, want)
	}
}

func TestSchedulerRespectsConstraintsAndWaitsForANodeThatMatches(t *testing.T) {
	st := storetest.New(t)
	create(t, st, newNode("hdd", 8000, 16*gi, "disk", "hdd"), newNode("ssd", 4000, 8*gi, "disk", "ssd"))
	startScheduler(t, st, nil)

	fast := newInstance("fast", "db", 100, 128*mi)
	fast.Spec.Template.Constraints = []v1.Constraint{{Label: "disk", Op: "=", Value: "ssd"}}
	gpu := newInstance("gpu", "ml", 100, 128*mi)
	gpu.Spec.Template.Constraints = []v1.Constraint{{Label: "gpu", Op: "exists"}}
	create(t, st, fast, gpu)

	if got := waitInstance(t, st, "fast", isBound).Spec.Node; got != "ssd" {
		t.Errorf("disk=ssd instance bound to %s, want ssd", got)
	}
	const want = "0/2 nodes available: 2 did not match constraint gpu exists"
	if got := waitInstance(t, st, "gpu", isUnschedulable).Status.Message; got != want {
		t.Errorf("message %q, want %q", got, want)
	}
	// A node that matches arrives, cordoned at first: the instance stays
	// put, and is bound once the cordon is lifted.
	g := newNode("gpu-1", 4000, 8*gi, "gpu", "a100")
	g.Spec.Unschedulable = true
	create(t, st, g)
	const cordoned = "0/3 nodes available: 2 did not match constraint gpu exists, 1 cordoned (unschedulable)"
	if got := waitInstance(t, st, "gpu", hasMessage(cordoned)).Spec.Node; got != "" {
		t.Fatalf("bound to cordoned node %s", got)
	}
	if _, err := store.Mutate(t.Context(), st, "", "gpu-1", func(n *v1.Node) error {
		n.Spec.Unschedulable = false
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got := waitInstance(t, st, "gpu", isBound).Spec.Node; got != "gpu-1" {
		t.Errorf("gpu instance bound to %s, want gpu-1", got)
	}
}

func TestSchedulerWaitsForTheFirstNode(t *testing.T) {
	st := storetest.New(t)
	startScheduler(t, st, nil)
	for _, name := range []string{"x1", "x2", "x3"} {
		create(t, st, newInstance(name, "web", 100, 512*mi))
	}
	const none = "0/0 nodes available: no nodes are registered; start a gantry agent to add one"
	for _, name := range []string{"x1", "x2", "x3"} {
		if got := waitInstance(t, st, name, isUnschedulable).Status.Message; got != none {
			t.Errorf("%s: message %q, want %q", name, got, none)
		}
	}
	// The node has room for one: the oldest gets it, the others learn
	// why they still wait.
	create(t, st, newNode("n1", 4000, 768*mi))
	if got := waitInstance(t, st, "x1", isBound).Spec.Node; got != "n1" {
		t.Errorf("x1 bound to %s, want n1", got)
	}
	const full = "0/1 nodes available: 1 insufficient memory (need 512Mi, most free 256Mi)"
	for _, name := range []string{"x2", "x3"} {
		if got := waitInstance(t, st, name, hasMessage(full)); got.Spec.Node != "" {
			t.Errorf("%s bound to %s, want it pending", name, got.Spec.Node)
		}
	}
}

func TestSchedulerSpreadsAnApp(t *testing.T) {
	st := storetest.New(t)
	// n1 is the roomiest by far, so bin-packing would not pick it, and
	// spreading must still put no more on it than on the others.
	create(t, st, newNode("n1", 16000, 32*gi), newNode("n2", 4000, 8*gi), newNode("n3", 4000, 8*gi))
	startScheduler(t, st, nil)
	for i := range 6 {
		inst := newInstance(fmt.Sprintf("web-%d", i), "web", 100, 128*mi)
		inst.Spec.Template.Placement = v1.PlacementSpread
		create(t, st, inst)
	}
	perNode := map[string]int{}
	for i := range 6 {
		perNode[waitInstance(t, st, fmt.Sprintf("web-%d", i), isBound).Spec.Node]++
	}
	if perNode["n1"] != 2 || perNode["n2"] != 2 || perNode["n3"] != 2 {
		t.Errorf("instances per node %v, want 2 on each", perNode)
	}
}

func TestSchedulerSkipsInstancesBeingDeleted(t *testing.T) {
	st := storetest.New(t)
	create(t, st, newNode("n1", 4000, 8*gi))
	gone := newInstance("gone", "web", 100, 128*mi)
	now := time.Now()
	gone.Metadata.Deleting = &now
	create(t, st, gone)
	startScheduler(t, st, nil)
	// An instance created after it is bound, so by then the scheduler
	// has seen the deleting one too.
	create(t, st, newInstance("marker", "web", 100, 128*mi))
	waitInstance(t, st, "marker", isBound)
	if got, err := store.Get[*v1.Instance](t.Context(), st, "default", "gone"); err != nil || got.Spec.Node != "" || got.Status.Reason != "" {
		t.Errorf("deleting instance: %v, node %q, reason %q; want it untouched", err, got.Spec.Node, got.Status.Reason)
	}
}

// The scheduler's etcd goes away and comes back (same data, same socket):
// the scheduler keeps binding afterwards, listing again if its watch broke.
func TestSchedulerSurvivesAnEtcdRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts etcd, which takes ~10 s; skipped with -short")
	}
	dir := t.TempDir()
	e := storetest.EmbeddedIn(t, dir)
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{"unix://" + filepath.Join(dir, "client.sock")},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	st := store.New(e.Client, "")
	create(t, st, newNode("n1", 4000, 8*gi))
	startScheduler(t, store.New(cli, ""), nil)
	create(t, st, newInstance("before", "web", 100, 128*mi))
	waitInstance(t, st, "before", isBound)

	start := time.Now()
	e.Close()
	e = storetest.EmbeddedIn(t, dir)
	st = store.New(e.Client, "")
	restarted := time.Now()
	create(t, st, newInstance("after", "web", 100, 128*mi))
	if got := waitInstance(t, st, "after", isBound).Spec.Node; got != "n1" {
		t.Errorf("bound to %s, want n1", got)
	}
	t.Logf("etcd restarted in %v; the next instance was bound %v later", restarted.Sub(start), time.Since(restarted))
}

// Three schedulers race for the same instances. Each bind is a
// compare-and-swap on the revision the scheduler read, so every instance is
// bound by exactly one of them and never moved afterwards.
func TestConcurrentSchedulersNeverDoubleBook(t *testing.T) {
	st := storetest.New(t)
	ctx := t.Context()
	for i := range 5 {
		create(t, st, newNode(fmt.Sprintf("n%d", i), 64000, 256*gi))
	}
	rev, err := st.Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var scheds []running
	for range 3 {
		scheds = append(scheds, startScheduler(t, st, nil))
	}
	const n = 60
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			inst := newInstance(fmt.Sprintf("i-%02d", i), fmt.Sprintf("app-%d", i%4), 100, 128*mi)
			if i%2 == 0 {
				inst.Spec.Template.Placement = v1.PlacementSpread
			}
			if err := st.Create(ctx, inst); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	for i := range n {
		waitInstance(t, st, fmt.Sprintf("i-%02d", i), isBound)
	}

	total := 0.0
	for i, s := range scheds {
		s.stop()
		got := counterValue(t, s.m.Attempts.WithLabelValues(resultScheduled))
		t.Logf("scheduler %d bound %v instances, lost %v races", i, got, counterValue(t, s.m.Attempts.WithLabelValues(resultConflict)))
		total += got
	}
	if total != n {
		t.Errorf("schedulers report %v successful binds for %d instances", total, n)
	}

	// Replay every change since before the instances existed: once an
	// instance has a node, no later write gives it another.
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	now, err := st.Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	first := map[string]string{}
	for ev := range st.Watch(wctx, instanceKind, store.WatchOptions{Revision: rev + 1}) {
		if ev.Type == store.Error {
			t.Fatal(ev.Err)
		}
		inst := ev.Object.(*v1.Instance)
		if node := inst.Spec.Node; node != "" {
			if was, ok := first[inst.Metadata.Name]; ok && was != node {
				t.Errorf("instance %s was bound to %s, then to %s", inst.Metadata.Name, was, node)
			}
			first[inst.Metadata.Name] = node
		}
		if ev.Revision >= now {
			break
		}
	}
	if len(first) != n {
		t.Errorf("saw %d instances bound in the history, want %d", len(first), n)
	}
}

// running is a scheduler started by a test.
type running struct {
	m    *Metrics
	stop func()
}

// startScheduler runs a scheduler until stop is called or the test ends.
// Stop returns once Run has returned, which is after every write it
// started has finished and been counted, so metrics and events are final.
func startScheduler(t *testing.T, st *store.Store, rec Recorder) running {
	t.Helper()
	m := NewMetrics(prometheus.NewRegistry())
	s := &Scheduler{
		Store:    st,
		Metrics:  m,
		Log:      slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Recorder: rec,
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return running{m: m, stop: stop}
}

func create(t *testing.T, st *store.Store, objs ...v1.Object) {
	t.Helper()
	for _, o := range objs {
		if err := st.Create(t.Context(), o); err != nil {
			t.Fatal(err)
		}
	}
}

func isBound(i *v1.Instance) bool { return i.Spec.Node != "" }

func isUnschedulable(i *v1.Instance) bool { return i.Status.Reason == ReasonUnschedulable }

func hasMessage(msg string) func(*v1.Instance) bool {
	return func(i *v1.Instance) bool { return i.Status.Message == msg }
}

// waitInstance waits, through a watch, until the named instance in
// namespace default satisfies cond, and returns it.
func waitInstance(t *testing.T, st *store.Store, name string, cond func(*v1.Instance) bool) *v1.Instance {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	inst, err := store.Get[*v1.Instance](ctx, st, "default", name)
	if err != nil {
		t.Fatal(err)
	}
	if cond(inst) {
		return inst
	}
	for ev := range st.Watch(ctx, instanceKind, store.WatchOptions{Namespace: "default", Name: name, Revision: inst.Metadata.Revision + 1}) {
		if ev.Type == store.Error {
			t.Fatalf("watch %s: %v", name, ev.Err)
		}
		if i, ok := ev.Object.(*v1.Instance); ok {
			inst = i
			if cond(i) {
				return i
			}
		}
	}
	t.Fatalf("instance %s: condition not met in time; last seen: node %q status %+v", name, inst.Spec.Node, inst.Status)
	return nil
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func histogramMean(t *testing.T, h prometheus.Histogram) time.Duration {
	t.Helper()
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.GetHistogram().GetSampleCount() == 0 {
		return 0
	}
	return time.Duration(m.GetHistogram().GetSampleSum() / float64(m.GetHistogram().GetSampleCount()) * float64(time.Second))
}

type recorded struct {
	object, eventType, reason, message string
}

// eventLog is a Recorder that remembers what it was told.
type eventLog struct {
	mu     sync.Mutex
	events []recorded
}

func (e *eventLog) Eventf(_ context.Context, obj v1.Object, eventType, reason, format string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.events = append(e.events, recorded{obj.GetMeta().Key(), eventType, reason, fmt.Sprintf(format, args...)})
}

func (e *eventLog) all() []recorded {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]recorded(nil), e.events...)
}

func (e *eventLog) count(reason string) int { return len(e.messages(reason)) }

func (e *eventLog) messages(reason string) []string {
	var out []string
	for _, ev := range e.all() {
		if ev.reason == reason {
			out = append(out, ev.message)
		}
	}
	return out
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

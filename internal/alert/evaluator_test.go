package alert

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/metrics"
	"github.com/gantry-dev/gantry/internal/notify"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/store/storetest"
)

// clock is a fake clock the test moves by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// sent is one notification handed to the sender.
type sent struct {
	ns    string
	names []string
	msg   notify.Message
}

// senderLog is a Sender that remembers what it was given.
type senderLog struct {
	mu   sync.Mutex
	msgs []sent
}

func (s *senderLog) Send(_ context.Context, ns string, names []string, msg notify.Message) {
	s.mu.Lock()
	s.msgs = append(s.msgs, sent{ns, names, msg})
	s.mu.Unlock()
}

func (s *senderLog) all() []sent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sent(nil), s.msgs...)
}

// eventLog is a Recorder that remembers reasons and messages.
type eventLog struct {
	mu  sync.Mutex
	evs []string
}

func (r *eventLog) Eventf(_ context.Context, obj v1.Object, typ, reason, format string, args ...any) {
	r.mu.Lock()
	r.evs = append(r.evs, fmt.Sprintf("%s %s %s: %s", obj.GetMeta().Name, typ, reason, fmt.Sprintf(format, args...)))
	r.mu.Unlock()
}

func (r *eventLog) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.evs...)
}

type fixture struct {
	ctx    context.Context
	store  *store.Store
	window *metrics.Window
	clock  *clock
	sender *senderLog
	events *eventLog
	e      *Evaluator
	reg    *prometheus.Registry
}

// newFixture runs an Evaluator over a real etcd and a real metrics window
// with a fake clock. Its periodic loop is slowed to an hour so that the
// test decides when evaluations happen (agents' reports still trigger
// one, which at an unchanged clock changes nothing).
func newFixture(t *testing.T, configure func(*Evaluator)) *fixture {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := storetest.New(t)
	if err := s.Create(ctx, &v1.Namespace{TypeMeta: v1.TypeMeta{Kind: "Namespace"}, Metadata: v1.ObjectMeta{Name: "default"}}); err != nil {
		t.Fatal(err)
	}
	f := &fixture{ctx: ctx, store: s, window: metrics.NewWindow(time.Hour, 10*time.Second),
		clock: &clock{t: time.Now().UTC()}, sender: &senderLog{}, events: &eventLog{}, reg: prometheus.NewRegistry()}
	f.e = &Evaluator{Store: s, Window: f.window, Notify: f.sender, Recorder: f.events, Log: slog.New(slog.DiscardHandler),
		Metrics: NewMetrics(f.reg), Interval: time.Hour, Now: f.clock.Now}
	if configure != nil {
		configure(f.e)
	}
	done := make(chan struct{})
	go func() { defer close(done); f.e.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-f.e.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("evaluator did not get ready")
	}
	return f
}

func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (f *fixture) create(t *testing.T, o v1.Object) {
	t.Helper()
	if err := f.store.Create(f.ctx, o); err != nil {
		t.Fatal(err)
	}
	f.seen(t, o)
}

// seen waits until the evaluator's informers hold o at its revision.
func (f *fixture) seen(t *testing.T, o v1.Object) {
	t.Helper()
	m := o.GetMeta()
	eventually(t, fmt.Sprintf("the evaluator sees %s %s at revision %d", o.GetType().Kind, m.Key(), m.Revision), func() bool {
		var got v1.Object
		var ok bool
		switch o.(type) {
		case *v1.Instance:
			got, ok = f.e.Instances.Get(m.Namespace, m.Name)
		case *v1.App:
			got, ok = f.e.apps.Get(m.Namespace, m.Name)
		case *v1.AlertRule:
			got, ok = f.e.rules.Get(m.Namespace, m.Name)
		case *v1.Node:
			for _, n := range f.e.nodes.List(nil) {
				if n.Metadata.Name == m.Name {
					got, ok = n, true
				}
			}
		}
		return ok && got.GetMeta().Revision >= m.Revision
	})
}

func (f *fixture) gone(t *testing.T, ns, name string) {
	t.Helper()
	eventually(t, "the evaluator forgets instance "+name, func() bool { _, ok := f.e.Instances.Get(ns, name); return !ok })
}

func (f *fixture) setRestarts(t *testing.T, name string, n int) {
	t.Helper()
	i, err := store.Mutate(f.ctx, f.store, "default", name, func(i *v1.Instance) error {
		i.Status.Restarts = n
		i.Status.Phase = v1.PhaseBackOff
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	f.seen(t, i)
}

func (f *fixture) evaluate(t *testing.T) {
	t.Helper()
	if err := f.e.Evaluate(f.ctx); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) rule(t *testing.T, name string) *v1.AlertRule {
	t.Helper()
	r, err := store.Get[*v1.AlertRule](f.ctx, f.store, "default", name)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (f *fixture) firing(ns, name string) float64 {
	var m dto.Metric
	if err := f.e.Metrics.Firing.WithLabelValues(ns, name).Write(&m); err != nil {
		panic(err)
	}
	return m.GetGauge().GetValue()
}

func crashloopRule(threshold float64, window, hold time.Duration, notifiers ...string) *v1.AlertRule {
	r := rule("crashloop", v1.AlertRestarts, threshold, func(r *v1.AlertRule) {
		r.Spec.Window, r.Spec.For, r.Spec.Severity, r.Spec.Notifiers = v1.Duration(window), v1.Duration(hold), "critical", notifiers
		r.Spec.App = "web"
	})
	if errs := r.Validate(); len(errs) > 0 {
		panic(errs)
	}
	return r
}

func TestCrashLoopingInstanceFiresAfterForAndResolvesWhenRestartsStop(t *testing.T) {
	f := newFixture(t, nil)
	f.create(t, appObj("web", 1))
	f.create(t, inst("web-a", "web"))
	f.create(t, crashloopRule(3, 2*time.Minute, 10*time.Second, "chat"))

	step := func(restarts int) {
		t.Helper()
		f.clock.Advance(5 * time.Second)
		if restarts >= 0 {
			f.setRestarts(t, "web-a", restarts)
		}
		f.evaluate(t)
	}
	f.evaluate(t)
	if st := f.rule(t, "crashloop").Status; st.State != v1.AlertInactive || st.LastEvaluated == nil {
		t.Fatalf("status after the first pass = %+v, want inactive and evaluated", st)
	}
	step(1)
	step(2)
	step(3) // +15s: increase reaches 3: pending
	pendingSince := f.clock.Now()
	if st := f.rule(t, "crashloop").Status; st.State != v1.AlertPending || !st.Since.Equal(pendingSince) {
		t.Fatalf("status = %+v, want pending since %s", st, pendingSince)
	}
	step(-1) // +20s: pending for 5s of 10s
	if len(f.sender.all()) != 0 {
		t.Fatalf("notified while pending: %+v", f.sender.all())
	}
	step(4) // +25s: pending for 10s: firing
	st := f.rule(t, "crashloop").Status
	if st.State != v1.AlertFiring || !slices.Equal(st.Subjects, []string{"instance/web-a"}) || st.Value != 4 {
		t.Fatalf("status = %+v, want firing for instance/web-a with value 4", st)
	}
	msgs := f.sender.all()
	if len(msgs) != 1 {
		t.Fatalf("got %d notifications, want 1", len(msgs))
	}
	m := msgs[0]
	if m.ns != "default" || !slices.Equal(m.names, []string{"chat"}) || m.msg.Kind != notify.KindAlert || m.msg.Status != notify.StatusFiring ||
		m.msg.Rule != "crashloop" || m.msg.App != "web" || m.msg.Severity != "critical" || m.msg.Threshold != 3 ||
		!strings.Contains(m.msg.Message, "instance web-a restarted 4 times in 2m0s") {
		t.Fatalf("notification = %+v", m)
	}
	if f.firing("default", "crashloop") != 1 {
		t.Error("gantry_alerts_firing is not 1")
	}
	step(5)
	step(-1)
	if len(f.sender.all()) != 1 {
		t.Fatalf("a firing alert notified again: %+v", f.sender.all())
	}

	// The app is fixed: no more restarts. Once the window has moved past
	// the last one, the alert resolves.
	f.clock.Advance(2 * time.Minute)
	f.evaluate(t)
	st = f.rule(t, "crashloop").Status
	if st.State != v1.AlertInactive || len(st.Subjects) != 0 {
		t.Fatalf("status = %+v, want inactive", st)
	}
	msgs = f.sender.all()
	if len(msgs) != 2 || msgs[1].msg.Status != notify.StatusResolved || !slices.Equal(msgs[1].msg.Subjects, []string{"instance/web-a"}) ||
		!strings.Contains(msgs[1].msg.Message, "no longer holds") {
		t.Fatalf("notifications = %+v, want a resolved one naming instance/web-a", msgs)
	}
	if f.firing("default", "crashloop") != 0 {
		t.Error("gantry_alerts_firing is not 0 after resolving")
	}
	evs := f.events.all()
	if len(evs) != 2 || !strings.Contains(evs[0], "Warning AlertFiring") || !strings.Contains(evs[1], "Normal AlertResolved") {
		t.Fatalf("events = %q", evs)
	}
}

func TestStatusIsNotRewrittenEveryPassJustForLastEvaluated(t *testing.T) {
	f := newFixture(t, func(e *Evaluator) { e.StatusEvery = time.Minute })
	f.create(t, crashloopRule(3, time.Minute, 0))
	f.evaluate(t)
	first := f.rule(t, "crashloop")
	for range 5 {
		f.clock.Advance(5 * time.Second)
		f.evaluate(t)
	}
	if r := f.rule(t, "crashloop"); r.Metadata.Revision != first.Metadata.Revision {
		t.Fatalf("status rewritten within StatusEvery: revision %d → %d", first.Metadata.Revision, r.Metadata.Revision)
	}
	f.clock.Advance(time.Minute)
	f.evaluate(t)
	r := f.rule(t, "crashloop")
	if r.Metadata.Revision == first.Metadata.Revision || !r.Status.LastEvaluated.Equal(f.clock.Now()) {
		t.Fatalf("status not refreshed after StatusEvery: %+v", r.Status)
	}
}

func TestTwoEvaluatorsNotifyATransitionOnce(t *testing.T) {
	f := newFixture(t, nil)
	second := &Evaluator{Store: f.store, Window: f.window, Notify: f.sender, Log: slog.New(slog.DiscardHandler), Interval: time.Hour, Now: f.clock.Now}
	done := make(chan struct{})
	ctx, cancel := context.WithCancel(f.ctx)
	go func() { defer close(done); second.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	<-second.Ready()

	f.create(t, appObj("web", 1))
	i := inst("web-a", "web")
	i.Status.Restarts = 5
	f.create(t, i)
	r := crashloopRule(3, time.Minute, 0)
	f.create(t, r)
	eventually(t, "the second evaluator sees the rule and the instance", func() bool {
		_, ok1 := second.rules.Get("default", "crashloop")
		_, ok2 := second.Instances.Get("default", "web-a")
		return ok1 && ok2
	})
	f.clock.Advance(time.Second)
	var wg sync.WaitGroup
	for _, e := range []*Evaluator{f.e, second} {
		wg.Add(1)
		go func() { defer wg.Done(); e.Evaluate(f.ctx) }()
	}
	wg.Wait()
	f.evaluate(t)
	second.Evaluate(f.ctx)
	if n := len(f.sender.all()); n != 1 {
		t.Fatalf("two evaluators sent %d notifications for one transition, want 1", n)
	}
	if st := f.rule(t, "crashloop").Status; st.State != v1.AlertFiring {
		t.Fatalf("status = %+v", st)
	}
}

func TestCPUAlertFollowsTheMetricsWindow(t *testing.T) {
	f := newFixture(t, nil)
	f.create(t, appObj("web", 1))
	f.create(t, inst("web-a", "web", ready))
	f.create(t, rule("hot", v1.AlertCPU, 80, func(r *v1.AlertRule) { r.Spec.For = v1.Duration(20 * time.Second) }))
	report := func(cpu float64) {
		f.window.Add(metrics.Report{Node: metrics.NodeSample{Node: "n1", Point: metrics.Point{Time: f.clock.Now()}},
			Instances: []metrics.InstanceSample{{Namespace: "default", Name: "web-a", App: "web", Node: "n1", CPULimit: 0.5,
				Point: metrics.Point{Time: f.clock.Now(), CPU: cpu}}}})
	}
	states := func() string { return f.rule(t, "hot").Status.State }
	var got []string
	for _, cpu := range []float64{0.1, 0.45, 0.45, 0.45, 0.2} {
		f.clock.Advance(10 * time.Second)
		report(cpu)
		f.evaluate(t)
		got = append(got, states())
	}
	want := []string{"inactive", "pending", "pending", "firing", "inactive"}
	if !slices.Equal(got, want) {
		t.Fatalf("states = %v, want %v", got, want)
	}
	msgs := f.sender.all()
	if len(msgs) != 2 || msgs[0].msg.Value != 90 || msgs[0].msg.Status != "firing" || msgs[1].msg.Status != "resolved" {
		t.Fatalf("notifications = %+v", msgs)
	}

	t.Run("an instance that stops reporting stops counting", func(t *testing.T) {
		report(0.5)
		f.evaluate(t)
		if states() != v1.AlertPending {
			t.Fatalf("state = %s", states())
		}
		f.clock.Advance(5 * time.Minute)
		f.evaluate(t)
		if states() != v1.AlertInactive {
			t.Fatalf("state with a stale sample = %s", states())
		}
	})
}

func TestNotReadyAndNodeNotReadyRules(t *testing.T) {
	f := newFixture(t, nil)
	f.create(t, appObj("web", 2))
	f.create(t, inst("web-a", "web", ready))
	f.create(t, inst("web-b", "web"))
	node := &v1.Node{TypeMeta: v1.TypeMeta{Kind: "Node"}, Metadata: v1.ObjectMeta{Name: "n1"}, Status: v1.NodeStatus{Ready: true}}
	f.create(t, node)
	f.create(t, rule("web-ready", v1.AlertNotReady, 0, func(r *v1.AlertRule) { r.Spec.App = "web" }))
	f.create(t, rule("nodes", v1.AlertNodeNotReady, 0))

	f.evaluate(t)
	if st := f.rule(t, "web-ready").Status; st.State != v1.AlertFiring || st.Message != "app web has 1 of 2 instances ready" {
		t.Fatalf("web-ready = %+v", st)
	}
	if st := f.rule(t, "nodes").Status; st.State != v1.AlertInactive {
		t.Fatalf("nodes = %+v", st)
	}
	b, err := store.Mutate(f.ctx, f.store, "default", "web-b", func(i *v1.Instance) error { i.Status.Ready = true; return nil })
	if err != nil {
		t.Fatal(err)
	}
	f.seen(t, b)
	n, err := store.Mutate(f.ctx, f.store, "", "n1", func(n *v1.Node) error { n.Status.Ready = false; return nil })
	if err != nil {
		t.Fatal(err)
	}
	f.seen(t, n)
	f.clock.Advance(5 * time.Second)
	f.evaluate(t)
	if st := f.rule(t, "web-ready").Status; st.State != v1.AlertInactive {
		t.Fatalf("web-ready = %+v", st)
	}
	if st := f.rule(t, "nodes").Status; st.State != v1.AlertFiring || !slices.Equal(st.Subjects, []string{"node/n1"}) {
		t.Fatalf("nodes = %+v", st)
	}
}

func TestDeletedRulesLeaveTheFiringMetric(t *testing.T) {
	f := newFixture(t, nil)
	r := rule("nodes", v1.AlertNodeNotReady, 0)
	f.create(t, r)
	f.evaluate(t)
	if _, err := f.store.Delete(f.ctx, store.KindFor[*v1.AlertRule](), "default", "nodes", 0); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the rule is gone", func() bool { _, ok := f.e.rules.Get("default", "nodes"); return !ok })
	f.evaluate(t)
	mfs, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "gantry_alerts_firing" && len(mf.GetMetric()) > 0 {
			t.Fatalf("gantry_alerts_firing still has %d series", len(mf.GetMetric()))
		}
	}
}

// TestCrashLoopAlertReachesASlackReceiver runs the whole path: a
// crash-looping instance's restarts, the evaluator, the notify manager and
// a local Slack-compatible receiver, which gets a firing message and, once
// the crash-looping instance is replaced by a healthy one, a resolved one.
func TestCrashLoopAlertReachesASlackReceiver(t *testing.T) {
	type slackMsg struct {
		Text string `json:"text"`
	}
	got := make(chan slackMsg, 16)
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m slackMsg
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &m); err != nil || m.Text == "" {
			http.Error(w, "invalid_payload", http.StatusBadRequest)
			return
		}
		got <- m
		io.WriteString(w, "ok")
	}))
	t.Cleanup(rcv.Close)

	mgr := &notify.Manager{Log: slog.New(slog.DiscardHandler), Retry: notify.Retry{Attempts: 3, Base: 50 * time.Millisecond, Max: 200 * time.Millisecond, Timeout: 2 * time.Second}}
	f := newFixture(t, func(e *Evaluator) {
		mgr.Store = e.Store
		e.Notify = mgr
	})
	// The receiver is on loopback: the namespace must allow private
	// targets, which is a cluster admin's call.
	if _, err := store.Mutate(f.ctx, f.store, "", "default", func(ns *v1.Namespace) error {
		ns.Spec.Policy = &v1.Policy{AllowPrivateTargets: true}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	chat := &v1.Notifier{TypeMeta: v1.TypeMeta{Kind: "Notifier"}, Metadata: v1.ObjectMeta{Name: "chat", Namespace: "default"},
		Spec: v1.NotifierSpec{Type: v1.NotifierSlack, URL: rcv.URL + "/services/T0/B0/x", Events: []string{"alerts"}}}
	if err := f.store.Create(f.ctx, chat); err != nil {
		t.Fatal(err)
	}
	// Started after the policy and the notifier exist, so that its first
	// list holds both.
	mctx, cancel := context.WithCancel(f.ctx)
	done := make(chan struct{})
	go func() { defer close(done); mgr.Run(mctx) }()
	t.Cleanup(func() { cancel(); <-done })
	if res := mgr.Test(f.ctx, chat); !res.Delivered {
		t.Fatalf("test delivery: %+v", res)
	}
	<-got
	f.create(t, appObj("web", 1))
	f.create(t, inst("web-a", "web"))
	f.create(t, crashloopRule(2, time.Minute, 0))

	for n := 1; n <= 3; n++ {
		f.clock.Advance(5 * time.Second)
		f.setRestarts(t, "web-a", n)
		f.evaluate(t)
	}
	select {
	case m := <-got:
		if !strings.Contains(m.Text, "[FIRING] default/crashloop") || !strings.Contains(m.Text, "web-a") {
			t.Fatalf("firing message text = %q", m.Text)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no firing message reached the receiver")
	}

	// The fix: the crash-looping instance is replaced by a healthy one.
	if _, err := f.store.Delete(f.ctx, store.KindFor[*v1.Instance](), "default", "web-a", 0); err != nil {
		t.Fatal(err)
	}
	f.gone(t, "default", "web-a")
	f.create(t, inst("web-b", "web", ready))
	f.clock.Advance(5 * time.Second)
	f.evaluate(t)
	select {
	case m := <-got:
		if !strings.Contains(m.Text, "[RESOLVED] default/crashloop") {
			t.Fatalf("resolved message text = %q", m.Text)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no resolved message reached the receiver")
	}
	eventually(t, "the notifier status counts the deliveries", func() bool {
		n, err := store.Get[*v1.Notifier](f.ctx, f.store, "default", "chat")
		return err == nil && n.Status.Delivered == 2 && n.Status.Failed == 0
	})
}

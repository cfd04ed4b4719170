package alert

import (
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/metrics"
)

func rule(name, cond string, threshold float64, mod ...func(*v1.AlertRule)) *v1.AlertRule {
	r := &v1.AlertRule{TypeMeta: v1.TypeMeta{Kind: "AlertRule"}, Metadata: v1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: v1.AlertRuleSpec{Condition: cond, Threshold: threshold}}
	for _, m := range mod {
		m(r)
	}
	return r
}

func inst(name, app string, mod ...func(*v1.Instance)) *v1.Instance {
	i := &v1.Instance{TypeMeta: v1.TypeMeta{Kind: "Instance"}, Metadata: v1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{v1.LabelApp: app}},
		Spec: v1.InstanceSpec{App: app}}
	for _, m := range mod {
		m(i)
	}
	return i
}

func appObj(name string, replicas int32) *v1.App {
	a := &v1.App{TypeMeta: v1.TypeMeta{Kind: "App"}, Metadata: v1.ObjectMeta{Name: name, Namespace: "default"}}
	a.Spec.Replicas = &replicas
	a.Spec.Image = name + ":v1"
	return a
}

func ready(i *v1.Instance) { i.Status.Ready = true }
func cpuCap(i *v1.Instance) {
	i.Spec.Template.Resources.Limits = &v1.ResourceLimits{CPU: 500}
}
func deleting(i *v1.Instance) { now := time.Now(); i.Metadata.Deleting = &now }

func TestConditions(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	w := metrics.NewWindow(time.Hour, 10*time.Second)
	sample := func(name, app string, at time.Time, cpu, limit float64, mem, memLimit int64) metrics.InstanceSample {
		return metrics.InstanceSample{Namespace: "default", Name: name, App: app, Node: "n1", CPULimit: limit,
			Point: metrics.Point{Time: at, CPU: cpu, Memory: mem, MemoryLimit: memLimit}}
	}
	w.Add(metrics.Report{Node: metrics.NodeSample{Node: "n1", Point: metrics.Point{Time: now}}, Instances: []metrics.InstanceSample{
		sample("web-a", "web", now.Add(-5*time.Second), 0.48, 0.5, 100<<20, 128<<20), // 96% cpu, 78% memory
		sample("web-b", "web", now.Add(-5*time.Second), 0.10, 0.5, 125<<20, 128<<20), // 20% cpu, 98% memory
		sample("api-a", "api", now.Add(-5*time.Second), 0.95, 1, 10<<20, 0),          // 95% cpu, no memory limit
		sample("old-a", "old", now.Add(-time.Minute), 1, 1, 1, 1),                    // stale
		sample("nolimit", "misc", now.Add(-5*time.Second), 4, 0, 1<<20, 0),           // no limits
	}})
	snap := &snapshot{
		now: now, window: w,
		instances: []*v1.Instance{
			inst("web-a", "web", ready, cpuCap), inst("web-b", "web", cpuCap), inst("api-a", "api", ready),
			inst("old-a", "old", ready), inst("nolimit", "misc"), inst("web-gone", "web", deleting),
		},
		apps:  []*v1.App{appObj("web", 2), appObj("api", 1), appObj("idle", 0), appObj("old", 3)},
		nodes: []*v1.Node{{Metadata: v1.ObjectMeta{Name: "n1"}, Status: v1.NodeStatus{Ready: true}}, {Metadata: v1.ObjectMeta{Name: "n2"}, Status: v1.NodeStatus{Message: "no heartbeat for 40s"}}},
		increase: func(i *v1.Instance, d time.Duration) (int, bool) {
			return map[string]int{"web-a": 5, "web-b": 1, "web-gone": 50}[i.Metadata.Name], true
		},
	}
	onlyWeb := func(r *v1.AlertRule) { r.Spec.App = "web" }
	onlyAPI := func(r *v1.AlertRule) { r.Spec.App = "api" }
	window := func(r *v1.AlertRule) { r.Spec.Window = v1.Duration(5 * time.Minute) }
	tests := []struct {
		name     string
		rule     *v1.AlertRule
		subjects []string
		value    float64
		app      string
		message  string
	}{
		{"cpu above the threshold of the limit fires for those instances", rule("cpu", v1.AlertCPU, 90), []string{"instance/api-a", "instance/web-a"}, 96, "", "2 instances use more than 90% of their CPU limit (or request, without one); highest: web-a at 96%"},
		{"an instance without a CPU limit is measured against its request, and the message says so", rule("cpu", v1.AlertCPU, 90, onlyAPI), []string{"instance/api-a"}, 95, "api", "instance api-a uses 95% of its CPU request (threshold 90%)"},
		{"a rule for one app looks at that app only", rule("cpu", v1.AlertCPU, 90, onlyWeb), []string{"instance/web-a"}, 96, "web", "instance web-a uses 96% of its CPU limit (threshold 90%)"},
		{"cpu below the threshold does not fire and reports the highest value", rule("cpu", v1.AlertCPU, 97), nil, 96, "", ""},
		{"memory uses the memory limit and skips instances without one", rule("mem", v1.AlertMemory, 90), []string{"instance/web-b"}, 97.7, "web", "instance web-b uses 98% of its memory limit (threshold 90%)"},
		{"restarts fire at the threshold, not only above it", rule("rs", v1.AlertRestarts, 5, window), []string{"instance/web-a"}, 5, "web", "instance web-a restarted 5 times in 5m0s (threshold 5)"},
		{"instances being deleted are not counted", rule("rs", v1.AlertRestarts, 1, window), []string{"instance/web-a", "instance/web-b"}, 5, "web", "2 instances restarted at least once in 5m0s; most: web-a (5 times)"},
		{"not-ready compares ready instances with the replicas wanted", rule("nr", v1.AlertNotReady, 0), []string{"app/old", "app/web"}, 3, "", "2 apps are not fully ready: old (1/3), web (1/2)"},
		{"not-ready for one app", rule("nr", v1.AlertNotReady, 0, onlyWeb), []string{"app/web"}, 1, "web", "app web has 1 of 2 instances ready"},
		{"node-not-ready names the node and why", rule("nodes", v1.AlertNodeNotReady, 0), []string{"node/n2"}, 1, "", "node n2 is NotReady: no heartbeat for 40s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := check(tt.rule, snap)
			if !slices.Equal(f.subjects, tt.subjects) || f.value != tt.value || f.app != tt.app || f.message != tt.message {
				t.Fatalf("got subjects %v value %v app %q message %q\nwant subjects %v value %v app %q message %q",
					f.subjects, f.value, f.app, f.message, tt.subjects, tt.value, tt.app, tt.message)
			}
		})
	}
}

func TestAdvance(t *testing.T) {
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *time.Time { x := t0.Add(d); return &x }
	holds := finding{subjects: []string{"instance/a"}, value: 5, message: "m"}
	none := finding{}
	tests := []struct {
		name       string
		prev       v1.AlertRuleStatus
		f          finding
		hold       time.Duration
		now        time.Duration
		state      string
		since      *time.Time
		transition string
	}{
		{"a new rule whose condition does not hold is inactive", v1.AlertRuleStatus{}, none, time.Minute, 0, v1.AlertInactive, nil, toNone},
		{"a condition that starts to hold makes the rule pending", v1.AlertRuleStatus{State: v1.AlertInactive}, holds, time.Minute, 0, v1.AlertPending, at(0), toPending},
		{"without a for duration it fires at once", v1.AlertRuleStatus{State: v1.AlertInactive}, holds, 0, 0, v1.AlertFiring, at(0), toFiring},
		{"pending stays pending until for has passed", v1.AlertRuleStatus{State: v1.AlertPending, Since: at(0)}, holds, time.Minute, 59 * time.Second, v1.AlertPending, at(0), toNone},
		{"pending fires once for has passed", v1.AlertRuleStatus{State: v1.AlertPending, Since: at(0)}, holds, time.Minute, time.Minute, v1.AlertFiring, at(time.Minute), toFiring},
		{"pending that stops holding clears without notice", v1.AlertRuleStatus{State: v1.AlertPending, Since: at(0)}, none, time.Minute, 30 * time.Second, v1.AlertInactive, at(30 * time.Second), toCleared},
		{"firing stays firing while it holds", v1.AlertRuleStatus{State: v1.AlertFiring, Since: at(0), Subjects: []string{"instance/a"}}, holds, time.Minute, time.Hour, v1.AlertFiring, at(0), toNone},
		{"firing that holds for a new subject spreads", v1.AlertRuleStatus{State: v1.AlertFiring, Since: at(0), Subjects: []string{"instance/b"}, FiredSubjects: []string{"instance/b"}}, holds, time.Minute, time.Hour, v1.AlertFiring, at(0), toSpread},
		{"firing that holds again for a subject it fired for does not", v1.AlertRuleStatus{State: v1.AlertFiring, Since: at(0), Subjects: []string{"instance/b"}, FiredSubjects: []string{"instance/a", "instance/b"}}, holds, time.Minute, time.Hour, v1.AlertFiring, at(0), toNone},
		{"firing that stops holding resolves", v1.AlertRuleStatus{State: v1.AlertFiring, Since: at(0)}, none, time.Minute, time.Hour, v1.AlertInactive, at(time.Hour), toResolved},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, tr := advance(tt.prev, tt.f, tt.hold, t0.Add(tt.now))
			// FiredSubjects: every subject since the rule fired, while
			// it fires; nothing otherwise.
			wantFired := []string(nil)
			if st.State == v1.AlertFiring {
				wantFired = slices.Clone(tt.prev.FiredSubjects)
				for _, s := range tt.f.subjects {
					if !slices.Contains(wantFired, s) {
						wantFired = append(wantFired, s)
					}
				}
				slices.Sort(wantFired)
			}
			if !slices.Equal(st.FiredSubjects, wantFired) {
				t.Errorf("fired subjects %v, want %v", st.FiredSubjects, wantFired)
			}
			if st.State != tt.state || tr != tt.transition || !sameTime(st.Since, tt.since) {
				t.Fatalf("got state %s since %v transition %q, want %s since %v transition %q", st.State, st.Since, tr, tt.state, tt.since, tt.transition)
			}
			if st.LastEvaluated == nil || !st.LastEvaluated.Equal(t0.Add(tt.now)) || !slices.Equal(st.Subjects, tt.f.subjects) {
				t.Fatalf("status %+v does not carry the evaluation", st)
			}
		})
	}
}

func TestRestartIncreaseWithinAWindow(t *testing.T) {
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	old := t0.Add(-24 * time.Hour)
	tests := []struct {
		name    string
		created time.Time
		seen    []observation // what the evaluator saw, in order
		samples []metrics.Point
		now     time.Duration // after t0
		window  time.Duration
		want    int
	}{
		{"an old instance counts from the first count the evaluator saw", old,
			[]observation{{t0, 7}, {t0.Add(time.Minute), 9}}, nil, time.Minute, 5 * time.Minute, 2},
		{"an instance created in the window counts from zero", t0.Add(-time.Minute),
			[]observation{{t0, 3}}, nil, 0, 5 * time.Minute, 3},
		{"restarts before the window do not count", old,
			[]observation{{t0, 1}, {t0.Add(time.Minute), 4}, {t0.Add(2 * time.Minute), 5}}, nil, 10 * time.Minute, 5 * time.Minute, 0},
		{"the count at the window's start is its baseline", old,
			[]observation{{t0, 1}, {t0.Add(time.Minute), 4}, {t0.Add(7 * time.Minute), 6}}, nil, 10 * time.Minute, 5 * time.Minute, 2},
		{"metrics samples from before the evaluator looked give the baseline", old,
			[]observation{{t0.Add(10 * time.Minute), 6}},
			[]metrics.Point{{Time: t0.Add(4 * time.Minute), Restarts: 2}, {Time: t0.Add(6 * time.Minute), Restarts: 3}}, 10 * time.Minute, 5 * time.Minute, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := metrics.NewWindow(time.Hour, 10*time.Second)
			for _, p := range tt.samples {
				w.Add(metrics.Report{Instances: []metrics.InstanceSample{{Namespace: "default", Name: "a", App: "web", Point: p}}})
			}
			i := inst("a", "web")
			i.Metadata.Created = tt.created
			var l restartLog
			for _, o := range tt.seen {
				i.Status.Restarts = o.n
				l.observe(o.t, []*v1.Instance{i}, time.Hour)
			}
			if got, _ := l.increase(w, t0.Add(tt.now), i, tt.window); got != tt.want {
				t.Fatalf("increase = %d, want %d (log %v)", got, tt.want, l.byKey)
			}
		})
	}
	t.Run("observations of instances that are gone are forgotten", func(t *testing.T) {
		var l restartLog
		l.observe(t0, []*v1.Instance{inst("a", "web"), inst("b", "web")}, time.Hour)
		l.observe(t0.Add(time.Second), []*v1.Instance{inst("b", "web")}, time.Hour)
		if _, ok := l.byKey["default/a"]; ok || len(l.byKey) != 1 {
			t.Fatalf("log = %v", l.byKey)
		}
	})
}

// A cpu or memory rule counts an instance's newest sample for three of
// its agent's sampling intervals, at least 30s: with --sample-interval
// 60s a fixed 30s dropped every instance between samples and the rules
// flapped.
func TestUsageRulesCountASampleForThreeSamplingIntervals(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name    string
		every   time.Duration // the agent's sampling interval; 0: one sample
		age     time.Duration // of the newest sample
		counted bool
	}{
		{"every 10s, newest 25s old", 10 * time.Second, 25 * time.Second, true},
		{"every 10s, newest 31s old", 10 * time.Second, 31 * time.Second, false},
		{"every 60s, newest 50s old", time.Minute, 50 * time.Second, true},
		{"every 60s, newest 170s old", time.Minute, 170 * time.Second, true},
		{"every 60s, newest 190s old", time.Minute, 190 * time.Second, false},
		{"every 2s, newest 20s old (at least 30s)", 2 * time.Second, 20 * time.Second, true},
		{"every 2s, newest 31s old", 2 * time.Second, 31 * time.Second, false},
		{"a first sample 25s old", 0, 25 * time.Second, true},
		{"a first sample 31s old", 0, 31 * time.Second, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := metrics.NewWindow(time.Hour, 10*time.Second)
			newest := now.Add(-tt.age)
			times := []time.Time{newest}
			if tt.every > 0 {
				times = []time.Time{newest.Add(-2 * tt.every), newest.Add(-tt.every), newest}
			}
			for _, at := range times {
				w.Add(metrics.Report{Node: metrics.NodeSample{Node: "n1", Point: metrics.Point{Time: at}}, Instances: []metrics.InstanceSample{
					{Namespace: "default", Name: "web-a", App: "web", CPULimit: 1, Point: metrics.Point{Time: at, CPU: 0.95, Memory: 90, MemoryLimit: 100}},
				}})
			}
			s := &snapshot{now: now, window: w}
			for _, cond := range []string{v1.AlertCPU, v1.AlertMemory} {
				v, ok, _ := s.instanceValue(rule("r", cond, 80), inst("web-a", "web"))
				if ok != tt.counted || ok && v < 89.9 {
					t.Fatalf("%s rule: value %v, counted %v; want counted %v", cond, v, ok, tt.counted)
				}
			}
		})
	}
}

func TestDescribeReadsAsASentence(t *testing.T) {
	r := rule("x", v1.AlertRestarts, 3, func(r *v1.AlertRule) { r.Spec.App = "web"; r.Spec.Window = v1.Duration(5 * time.Minute) })
	if got := describe(r); !strings.Contains(got, "an instance of web restarting 3 times in 5m0s") {
		t.Fatalf("describe = %q", got)
	}
}

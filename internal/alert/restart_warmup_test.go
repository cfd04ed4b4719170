package alert

import (
	"context"
	"log/slog"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/metrics"
)

// The package doc says a restarted server "continues where the last one
// stopped". The metrics window is in memory, so a restarted server's first
// pass once saw no samples and resolved every firing cpu/memory (and
// restarts) alert, notifying "resolved" while the condition still held;
// the next report then fired it again. Now an instance without a sample
// leaves the stored state as it is for a minute after the start; past
// that, an instance that sends nothing is not using anything.
func TestRestartedServerDoesNotResolveAFiringCPUAlert(t *testing.T) {
	f := firingCPURule(t)
	// The server restarts: same store, a new (empty) metrics window.
	restarted := f.restart(t, nil)
	f.clock.Advance(2 * time.Second) // before the agent's next report
	if err := restarted.Evaluate(f.ctx); err != nil {
		t.Fatal(err)
	}
	if st := f.rule(t, "hot").Status.State; st != v1.AlertFiring {
		t.Errorf("state after the restart = %s, want still firing (no sample seen yet is not 'resolved')", st)
	}
	for _, m := range f.sender.all() {
		if m.msg.Status == "resolved" {
			t.Errorf("a restart sent %q: %s", m.msg.Status, m.msg.Message)
		}
	}
	f.clock.Advance(warmUpSamples)
	if err := restarted.Evaluate(f.ctx); err != nil {
		t.Fatal(err)
	}
	if st := f.rule(t, "hot").Status.State; st != v1.AlertInactive {
		t.Errorf("state a minute after the restart with no sample = %s, want inactive", st)
	}
}

// The same for a restarts rule: the restart history (window samples and the
// evaluator's own observations) is in memory only, so a restarted server
// once saw an increase of 0 for a crash-looping instance and resolved.
func TestRestartedServerDoesNotResolveAFiringRestartsAlert(t *testing.T) {
	f := newFixture(t, nil)
	f.create(t, appObj("web", 1))
	f.create(t, inst("web-a", "web"))
	f.create(t, crashloopRule(3, 2*time.Minute, 0))
	f.clock.Advance(3 * time.Minute) // the instance is older than the window
	f.evaluate(t)
	for n := 1; n <= 3; n++ {
		f.clock.Advance(10 * time.Second)
		f.setRestarts(t, "web-a", n)
		f.evaluate(t)
	}
	if st := f.rule(t, "crashloop").Status.State; st != v1.AlertFiring {
		t.Fatalf("state = %s, want firing", st)
	}
	restarted := f.restart(t, nil)
	f.clock.Advance(5 * time.Second)
	if err := restarted.Evaluate(f.ctx); err != nil {
		t.Fatal(err)
	}
	if st := f.rule(t, "crashloop").Status.State; st != v1.AlertFiring {
		t.Errorf("state 5s after a restart = %s, want still firing (3 restarts in the last 35s)", st)
	}
}

// firingCPURule is a fixture whose rule hot fires: instance web-a of app
// web reported 98% of its CPU limit.
func firingCPURule(t *testing.T) *fixture {
	t.Helper()
	f := newFixture(t, nil)
	f.create(t, appObj("web", 1))
	f.create(t, inst("web-a", "web", ready))
	f.create(t, rule("hot", v1.AlertCPU, 80))
	f.clock.Advance(10 * time.Second)
	f.reportCPU(0.49)
	f.evaluate(t)
	if st := f.rule(t, "hot").Status.State; st != v1.AlertFiring {
		t.Fatalf("state = %s, want firing", st)
	}
	return f
}

// reportCPU adds a report of node n1 in which web-a (CPU limit 0.5) used
// cpu cores, now.
func (f *fixture) reportCPU(cpu float64) {
	f.window.Add(metrics.Report{Node: metrics.NodeSample{Node: "n1", Point: metrics.Point{Time: f.clock.Now()}},
		Instances: []metrics.InstanceSample{{Namespace: "default", Name: "web-a", App: "web", Node: "n1", CPULimit: 0.5,
			Point: metrics.Point{Time: f.clock.Now(), CPU: cpu}}}})
}

// restart runs a second evaluator on the fixture's store with a new,
// empty metrics window, as a restarted server has, and waits until it
// has read the stored rules. m may be nil.
func (f *fixture) restart(t *testing.T, m *Metrics) *Evaluator {
	t.Helper()
	ctx, cancel := context.WithCancel(f.ctx)
	restarted := &Evaluator{Store: f.store, Window: metrics.NewWindow(time.Hour, 10*time.Second), Notify: f.sender,
		Log: slog.New(slog.DiscardHandler), Interval: time.Hour, Now: f.clock.Now, Metrics: m}
	done := make(chan struct{})
	go func() { defer close(done); restarted.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	<-restarted.Ready()
	return restarted
}

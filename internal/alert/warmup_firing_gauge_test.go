package alert

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/metrics"
)

// gantry_alerts_firing is documented as 1 for each firing rule. After a
// server restart, a rule whose stored firing state the warm-up left
// standing never had its gauge set: for a minute (cpu/memory) or a whole
// restarts window (e.g. 1h) the series was absent, and Prometheus alerts
// built on it resolved.
func TestFiringGaugeFollowsTheStoredStateDuringWarmUp(t *testing.T) {
	f := newFixture(t, nil)
	f.create(t, appObj("web", 1))
	f.create(t, inst("web-a", "web", ready))
	f.create(t, rule("hot", v1.AlertCPU, 80))
	f.clock.Advance(10 * time.Second)
	f.window.Add(metrics.Report{Node: metrics.NodeSample{Node: "n1", Point: metrics.Point{Time: f.clock.Now()}},
		Instances: []metrics.InstanceSample{{Namespace: "default", Name: "web-a", App: "web", Node: "n1", CPULimit: 0.5,
			Point: metrics.Point{Time: f.clock.Now(), CPU: 0.49}}}})
	f.evaluate(t)
	if st := f.rule(t, "hot").Status.State; st != v1.AlertFiring {
		t.Fatalf("state = %s, want firing", st)
	}

	// The server restarts: same store, a new (empty) metrics window.
	ctx, cancel := context.WithCancel(f.ctx)
	m := NewMetrics(prometheus.NewRegistry())
	restarted := &Evaluator{Store: f.store, Window: metrics.NewWindow(time.Hour, 10*time.Second), Notify: f.sender,
		Log: slog.New(slog.DiscardHandler), Interval: time.Hour, Now: f.clock.Now, Metrics: m}
	done := make(chan struct{})
	go func() { defer close(done); restarted.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	<-restarted.Ready()
	f.clock.Advance(2 * time.Second)
	if err := restarted.Evaluate(f.ctx); err != nil {
		t.Fatal(err)
	}
	if st := f.rule(t, "hot").Status.State; st != v1.AlertFiring {
		t.Fatalf("state = %s, want firing", st)
	}
	var d dto.Metric
	if err := m.Firing.WithLabelValues("default", "hot").Write(&d); err != nil {
		t.Fatal(err)
	}
	if v := d.GetGauge().GetValue(); v != 1 {
		t.Errorf("gantry_alerts_firing{rule=hot} = %v while the rule's status is firing, want 1", v)
	}
}

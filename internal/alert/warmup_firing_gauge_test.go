package alert

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// gantry_alerts_firing is documented as 1 for each firing rule. After a
// server restart, a rule whose stored firing state the warm-up left
// standing never had its gauge set: for a minute (cpu/memory) or a whole
// restarts window (e.g. 1h) the series was absent, and Prometheus alerts
// built on it resolved.
func TestFiringGaugeFollowsTheStoredStateDuringWarmUp(t *testing.T) {
	f := firingCPURule(t)
	// The server restarts: same store, a new (empty) metrics window.
	m := NewMetrics(prometheus.NewRegistry())
	restarted := f.restart(t, m)
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

package alert

import (
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/metrics"
	"github.com/gantry-dev/gantry/internal/store"
)

// A namespace-wide rule (no spec.app) that fired for one App's instance
// sent app=web with the firing notification but no app with the resolved
// one: a receiver that pairs firing and resolved by (namespace, rule,
// app) never saw the alert end, and Slack's resolved message lacked the
// App. It is taken from the firing subjects now, also when the instance
// is gone (from its metrics series).
func TestResolvedNotificationNamesTheFiringApp(t *testing.T) {
	for _, tt := range []struct {
		name    string
		resolve func(t *testing.T, f *fixture, report func(float64))
	}{
		{"usage drops", func(t *testing.T, f *fixture, report func(float64)) { report(0.1) }},
		{"instance deleted", func(t *testing.T, f *fixture, report func(float64)) {
			if _, err := f.store.Delete(f.ctx, store.KindFor[*v1.Instance](), "default", "web-a", 0); err != nil {
				t.Fatal(err)
			}
			f.gone(t, "default", "web-a")
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil)
			f.create(t, appObj("web", 1))
			f.create(t, inst("web-a", "web", ready))
			f.create(t, rule("hot", v1.AlertCPU, 80))
			report := func(cpu float64) {
				f.window.Add(metrics.Report{Node: metrics.NodeSample{Node: "n1", Point: metrics.Point{Time: f.clock.Now()}},
					Instances: []metrics.InstanceSample{{Namespace: "default", Name: "web-a", App: "web", Node: "n1", CPULimit: 0.5,
						Point: metrics.Point{Time: f.clock.Now(), CPU: cpu}}}})
			}
			f.clock.Advance(10 * time.Second)
			report(0.45)
			f.evaluate(t)
			f.clock.Advance(10 * time.Second)
			tt.resolve(t, f, report)
			f.evaluate(t)
			msgs := f.sender.all()
			if len(msgs) != 2 || msgs[1].msg.Status != "resolved" {
				t.Fatalf("notifications = %+v, want firing then resolved", msgs)
			}
			if fir, res := msgs[0].msg, msgs[1].msg; fir.App != "web" || res.App != "web" {
				t.Errorf("firing app = %q, resolved app = %q (subjects %v), want web for both", fir.App, res.App, res.Subjects)
			}
		})
	}
}

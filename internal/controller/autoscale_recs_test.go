package controller

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/apps"
	"github.com/gantry-dev/gantry/internal/metrics"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/store/storetest"
)

// The CPU recommendation scaled the replicas asked for by the measured
// utilisation, but the metrics cover the instances that reported: right
// after a scale the two differ, and the autoscaler overshot (2 busy
// instances scaled to 4 became 8) or undershot.
func TestAutoscalerScalesTheInstancesMeasured(t *testing.T) {
	type sample struct {
		instances int
		cpuEach   float64 // cores, of a 250m request; -1 for not known yet
		unknown   int     // of the instances, those whose CPU is not known yet
	}
	tests := []struct {
		name    string
		current int32
		samples []sample // one a second, oldest first
		want    int32
		wantOK  bool
	}{
		{"steady", 4, []sample{{4, 0.25, 0}, {4, 0.25, 0}, {4, 0.25, 0}}, 8, true},
		{"just scaled up: the new instances do not report yet", 4, []sample{{2, 0.25, 0}, {2, 0.25, 0}, {2, 0.25, 0}}, 4, true},
		{"just scaled down: the retired ones still report", 2, []sample{{4, 0.0625, 0}, {4, 0.0625, 0}, {4, 0.0625, 0}}, 2, true},
		{"the newest sample's count", 2, []sample{{2, 0.25, 0}, {2, 0.25, 0}, {3, 0.25, 0}}, 6, true},
		{"no CPU measured yet is no reading", 4, []sample{{4, -1, 0}, {4, -1, 0}}, 0, false},
		// Scaled 2 → 4 for 0.5 cores: per-instance figures of before
		// the scale, read against the 4 after it, made 6, then 8.
		{"after a scale-up the same load is the same count", 4, []sample{{2, 0.25, 0}, {4, 0.125, 0}, {4, 0.125, 0}}, 4, true},
		// The two new instances' first samples have no CPU yet: the
		// point counts them at the others' mean, which doubled the load.
		{"instances not measured yet carry no load", 4, []sample{{2, 0.25, 0}, {4, 0.25, 2}, {4, 0.25, 2}}, 4, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := decodeApp(t, "kind: App\nname: burn\nnamespace: default\nimage: x:v1\nresources: {cpu: 250m}\nautoscale: {min: 1, max: 20, targetCPUPercent: 50}\n")
			w := metrics.NewWindow(time.Hour, time.Second)
			now := time.Unix(2_000_000, 0)
			for _, smp := range tt.samples {
				now = now.Add(time.Second)
				r := metrics.Report{Node: metrics.NodeSample{Node: "n1", Point: metrics.Point{Time: now}}}
				for k := 0; k < smp.instances; k++ {
					p := metrics.Point{Time: now, CPU: smp.cpuEach}
					if smp.cpuEach < 0 || k >= smp.instances-smp.unknown {
						p = metrics.Point{Time: now, CPUUnknown: true}
					}
					r.Instances = append(r.Instances, metrics.InstanceSample{Namespace: "default", Name: fmt.Sprintf("burn-%d", k), App: "burn", CPULimit: 0.25, Point: p})
				}
				w.Add(r)
			}
			as := &Autoscaler{Window: w, Lookback: 10 * time.Second, Tolerance: 0.1}
			got, why, ok := as.recommend(a, tt.current, now)
			if ok != tt.wantOK || ok && got != tt.want {
				t.Errorf("recommend at %d replicas = %d (%q, ok %v); want %d (ok %v)", tt.current, got, why, ok, tt.want, tt.wantOK)
			}
		})
	}
}

// The recommendations a scale-down waits for must be this App's, and
// recent: after a gap in its metrics longer than the window, a single low
// reading scaled it down at once (the history was there, only expired, so
// it was not seeded again); and an App created again under a deleted
// one's name inherited the deleted one's high recommendations, which the
// scale-down then "scaled up" to.
func TestAutoscalerHistoryIsThisAppsAndRecent(t *testing.T) {
	const doc = "kind: App\nname: a\nnamespace: default\nimage: x:v1\nautoscale: {min: 1, max: 8, targetRequestsPerSecond: 10}\n"
	tests := []struct {
		name string
		// namesake: the App evaluated before is deleted, and the one
		// evaluated after is a new App of the same name at replicas.
		namesake bool
		ago      time.Duration
		replicas int32
		want     int32
	}{
		{"the same App within the window", false, 10 * time.Second, 8, 8},
		{"the same App after a longer gap", false, 2 * time.Minute, 8, 8},
		{"a new App of a deleted one's name", true, 10 * time.Second, 2, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			s := storetest.New(t)
			now := time.Unix(2_000_000, 0)
			rec := &eventLog{}
			as := rateAutoscaler(s, 80, func() time.Time { return now }, rec)
			// Busy: 80 requests/s at 10 per instance, 8 replicas.
			if err := as.evaluate(ctx, runningAutoscaled(t, s, doc, 8)); err != nil {
				t.Fatal(err)
			}
			var a *v1.App
			if tt.namesake {
				if _, err := apps.Delete(ctx, s, "default", "a", 0); err != nil {
					t.Fatal(err)
				}
				a = runningAutoscaled(t, s, doc, tt.replicas)
			} else {
				var err error
				if a, err = store.Get[*v1.App](ctx, s, "default", "a"); err != nil {
					t.Fatal(err)
				}
			}
			// Idle: a single low reading.
			now = now.Add(tt.ago)
			as.Requests = fixedRate(1)
			if err := as.evaluate(ctx, a); err != nil {
				t.Fatal(err)
			}
			got, err := store.Get[*v1.App](ctx, s, "default", "a")
			if err != nil {
				t.Fatal(err)
			}
			if n := got.DesiredReplicas(); n != tt.want {
				t.Errorf("%d replicas after one low reading, want %d; events %v", n, tt.want, rec.events)
			}
		})
	}
}

// The recommendations of Apps the autoscaler no longer scales (deleted,
// or autoscale removed) are dropped, not kept for ever.
func TestAutoscalerForgetsAppsItNoLongerScales(t *testing.T) {
	ctx := context.Background()
	s := storetest.New(t)
	as := rateAutoscaler(s, 10, time.Now, &eventLog{})
	scaled := runningAutoscaled(t, s, "kind: App\nname: a\nnamespace: default\nimage: x:v1\nautoscale: {min: 1, max: 8, targetRequestsPerSecond: 10}\n", 1)
	saveApp(t, s, decodeApp(t, "kind: App\nname: b\nnamespace: default\nimage: x:v1\n"))
	fixed, err := store.Get[*v1.App](ctx, s, "default", "b")
	if err != nil {
		t.Fatal(err)
	}
	as.Apps.Observe(scaled)
	as.Apps.Observe(fixed)
	old := []recommendation{{time.Now(), 4}}
	as.recs[fixed.Metadata.UID] = old // autoscale since removed
	as.recs["deleted-app-uid"] = old
	as.evaluateAll(ctx)
	if got := slices.Collect(maps.Keys(as.recs)); !slices.Equal(got, []string{scaled.Metadata.UID}) {
		t.Errorf("recommendations kept for %v; want only autoscaled app a's (%s)", got, scaled.Metadata.UID)
	}
}

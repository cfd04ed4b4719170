package controller

import (
	"context"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/informer"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/store/storetest"
)

// The guide: "It scales up at once and down only after 60s of agreeing
// recommendations". The recommendation history started empty (a new
// autoscaler after a server restart, or an App seen for the first time),
// so the very first low reading scaled down at once. Kubernetes seeds the
// history with the current count for this reason, and so does Gantry now.
func TestAutoscalerFirstEvaluationDoesNotScaleDownAtOnce(t *testing.T) {
	ctx := context.Background()
	s := storetest.New(t)
	a := runningAutoscaled(t, s, "kind: App\nname: a\nnamespace: default\nimage: x:v1\nautoscale: {min: 1, max: 8, targetRequestsPerSecond: 10}\n", 8)
	// A momentary dip: 1 request/s across 8 instances.
	as := rateAutoscaler(s, 1, time.Now, &eventLog{})
	if err := as.evaluate(ctx, a); err != nil {
		t.Fatal(err)
	}
	got, _ := store.Get[*v1.App](ctx, s, "default", "a")
	if n := got.DesiredReplicas(); n != 8 {
		t.Errorf("first evaluation scaled 8 -> %d at once on a single low reading; want no scale-down before the 60s stabilization window", n)
	}
}

// targetRequestsPerSecond only has to be non-negative, so a tiny target
// made rps/target overflow int32: the conversion yielded a negative count,
// clamped to min. Heavy load then scaled the App DOWN to min instead of up
// to max.
func TestAutoscalerHugeRatioScalesToMax(t *testing.T) {
	s := storetest.New(t)
	a := runningAutoscaled(t, s, "kind: App\nname: a\nnamespace: default\nimage: x:v1\nautoscale: {min: 1, max: 8, targetRequestsPerSecond: 0.000001}\n", 4)
	as := rateAutoscaler(s, 5000, time.Now, &eventLog{})
	want, _, _ := as.recommend(a, 4, time.Now())
	if want < 4 {
		t.Errorf("5000 req/s against a target of 1e-6 per instance: recommendation %d (< current 4); want max", want)
	}
}

// The scale-down stabilization took the highest recommendation of the
// window without clamping it to the App's current max. After max was
// lowered (10 -> 4), a low reading turned into a "scale-up" to the old
// recommendation 10: status.autoscaleReplicas was written as 10 (above
// max) and a Scaled event said "scaled from 4 to 10 replicas".
func TestAutoscalerStabilizationKeepsALoweredMax(t *testing.T) {
	ctx := context.Background()
	s := storetest.New(t)
	a := runningAutoscaled(t, s, "kind: App\nname: a\nnamespace: default\nimage: x:v1\nautoscale: {min: 1, max: 4, targetRequestsPerSecond: 10}\n", 4)
	now := time.Now()
	rec := &eventLog{}
	as := rateAutoscaler(s, 1, func() time.Time { return now }, rec)
	// recommended 10 seconds ago, under the former max of 10
	as.recs[a.Metadata.UID] = []recommendation{{now.Add(-10 * time.Second), 10}}
	if err := as.evaluate(ctx, a); err != nil {
		t.Fatal(err)
	}
	got, _ := store.Get[*v1.App](ctx, s, "default", "a")
	if got.Status.AutoscaleReplicas > 4 {
		t.Errorf("status.autoscaleReplicas = %d with autoscale.max 4; events: %v", got.Status.AutoscaleReplicas, rec.events)
	}
}

// runningAutoscaled stores the App of doc, done rolling out and scaled by
// the autoscaler to replicas, and returns it.
func runningAutoscaled(t *testing.T, s *store.Store, doc string, replicas int32) *v1.App {
	t.Helper()
	saveApp(t, s, decodeApp(t, doc))
	a, err := store.Mutate(context.Background(), s, "default", "a", func(x *v1.App) error {
		x.Status.Phase, x.Status.StableRevision, x.Status.AutoscaleReplicas = v1.AppRunning, x.Status.Revision, replicas
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// rateAutoscaler is an Autoscaler on s that sees rate requests/s for
// every App, with a minute of scale-down stabilization.
func rateAutoscaler(s *store.Store, rate float64, now func() time.Time, rec *eventLog) *Autoscaler {
	return &Autoscaler{Store: s, Apps: informer.New[*v1.App](s, quiet), Requests: fixedRate(rate),
		Recorder: rec, Log: quiet, Now: now, Tolerance: 0.1,
		DownStabilization: time.Minute, recs: map[string][]recommendation{}}
}

package controller

import (
	"context"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/store/storetest"
)

// An App written since the cache read it (here: only a status write) is
// not scaled, and the autoscaler does not announce that it scaled it.
func TestAutoscalerSaysNothingWhenItWroteNothing(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := storetest.New(t)
	const doc = "kind: App\nname: a\nnamespace: default\nimage: x:v1\nautoscale: {min: 1, max: 4, targetRequestsPerSecond: 1}\n"
	saveApp(t, s, decodeApp(t, doc))
	stale, err := store.Get[*v1.App](ctx, s, "default", "a")
	if err != nil {
		t.Fatal(err)
	}
	stale.Status.StableRevision, stale.Status.Phase = stale.Status.Revision, v1.AppRunning
	// A status write (e.g. the rollout controller's) bumps the revision.
	if _, err := store.Mutate(ctx, s, "default", "a", func(x *v1.App) error { x.Status.Message = "x"; return nil }); err != nil {
		t.Fatal(err)
	}
	rec := &eventLog{}
	as := rateAutoscaler(s, 4, time.Now, rec)
	if err := as.evaluate(ctx, stale); err != nil {
		t.Fatal(err)
	}
	a, _ := store.Get[*v1.App](ctx, s, "default", "a")
	if a.DesiredReplicas() == 1 && rec.has("Scaled") {
		t.Errorf("App left at %d replicas, yet events say: %v", a.DesiredReplicas(), rec.events)
	}
}

// An autoscaler capped by the namespace quota recorded a Warning event at
// every pass (every 5 s), twelve a minute to every chat notifier. It
// records one when the cap changes.
func TestAutoscalerAnnouncesAQuotaCapOnce(t *testing.T) {
	ctx := context.Background()
	s := storetest.New(t)
	const doc = "kind: App\nname: a\nnamespace: default\nimage: x:v1\nautoscale: {min: 1, max: 8, targetRequestsPerSecond: 1}\n"
	saveApp(t, s, decodeApp(t, doc))
	if _, err := store.Mutate(ctx, s, "default", "a", func(x *v1.App) error {
		x.Status.StableRevision, x.Status.Phase = x.Status.Revision, v1.AppRunning
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	rec := &eventLog{}
	allowed := int32(1)
	as := rateAutoscaler(s, 4, time.Now, rec)
	as.Quota = func(context.Context, *v1.App, int32) (int32, error) { return allowed, nil }
	count := func() int {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		n := 0
		for _, e := range rec.events {
			if len(e) > len("QuotaLimitsScaling") && e[:len("QuotaLimitsScaling")] == "QuotaLimitsScaling" {
				n++
			}
		}
		return n
	}
	for range 3 {
		a, _ := store.Get[*v1.App](ctx, s, "default", "a")
		if err := as.evaluate(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	if n := count(); n != 1 {
		t.Fatalf("three passes capped alike: %d QuotaLimitsScaling events, want 1", n)
	}
	allowed = 2 // the quota was raised, not enough
	a, _ := store.Get[*v1.App](ctx, s, "default", "a")
	if err := as.evaluate(ctx, a); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 2 {
		t.Fatalf("a new cap: %d events, want 2", n)
	}
}

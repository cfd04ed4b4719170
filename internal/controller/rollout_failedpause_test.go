package controller

import (
	"context"
	"strings"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/store/storetest"
)

// A first rollout that missed its deadline is Failed "until a fix is
// applied" (docs/guide.md), and announced once. Pausing it (to look into
// it) once turned the failure into a mere "Paused" (gantry rollout status
// then waited for a resume instead of exiting 1), and a resume started a
// fresh deadline that failed, and was announced, again.
func TestPausingAFailedRolloutKeepsItFailed(t *testing.T) {
	ctx := context.Background()
	s := storetest.New(t)
	rec := &eventLog{}
	r := newDetachedRollout(s, rec)
	step := stepper(t, r)
	saveApp(t, s, decodeApp(t, "kind: App\nname: web\nimage: web:broken\nreplicas: 1\nstrategy: {progressDeadline: 1s}"))
	past := time.Now().Add(-time.Minute).UTC()
	if _, err := store.Mutate(ctx, s, "default", "web", func(a *v1.App) error { a.Status.RolloutStarted = &past; return nil }); err != nil {
		t.Fatal(err)
	}
	placeInstance(t, r, storedApp(t, r, "web"), 1, false)
	if a := step(0); a.Status.Phase != v1.AppFailed {
		t.Fatalf("phase %s, want Failed", a.Status.Phase)
	}
	setPaused(t, s, r, true, 0)
	a := step(time.Second)
	phaseWhilePaused, msgWhilePaused := a.Status.Phase, a.Status.Message
	setPaused(t, s, r, false, 0)
	step(time.Second)
	a = step(5 * time.Second) // past the deadline again
	if a.Status.Phase != v1.AppFailed || strings.HasSuffix(a.Status.Message, "(paused)") || !strings.HasSuffix(msgWhilePaused, "(paused)") {
		t.Errorf("after resume: %s %q (while paused: %q); want Failed, saying paused only while it was", a.Status.Phase, a.Status.Message, msgWhilePaused)
	}
	if phaseWhilePaused != v1.AppFailed || rec.count("ProgressDeadlineExceeded") != 1 {
		t.Fatalf("paused failed rollout had phase %s (want Failed); ProgressDeadlineExceeded announced %d times (want 1): %v",
			phaseWhilePaused, rec.count("ProgressDeadlineExceeded"), rec.events)
	}
}

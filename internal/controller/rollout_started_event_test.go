package controller

import (
	"context"
	"strings"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/apps"
	"github.com/gantry-dev/gantry/internal/store"
)

// lastEvent is the last event recorded with this reason, or "".
func (e *eventLog) lastEvent(reason string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	for k := len(e.events) - 1; k >= 0; k-- {
		if strings.HasPrefix(e.events[k], reason+":") {
			return e.events[k]
		}
	}
	return ""
}

// A rollout started by `gantry rollout undo` used to be announced as
// "template changed": the event said neither that it was a rollback nor
// to which revision, although the revision's change cause knew.
func TestRolloutStartedEventGivesTheChangeCause(t *testing.T) {
	rec := &eventLog{}
	s, r, _ := runningV1(t, 1, rec)
	saveApp(t, s, decodeApp(t, "kind: App\nname: web\nimage: web:v2\nreplicas: 1"))
	storedApp(t, r, "web")
	if ev := rec.lastEvent("RolloutStarted"); ev != "RolloutStarted: rolling out revision 2 (template changed)" {
		t.Errorf("event after an apply with no change cause: %q", ev)
	}
	markStable(t, s, "web")
	storedApp(t, r, "web")
	if _, _, err := apps.Rollback(context.Background(), s, "default", "web", apps.RollbackOptions{}); err != nil {
		t.Fatal(err)
	}
	storedApp(t, r, "web")
	if ev := rec.lastEvent("RolloutStarted"); ev != "RolloutStarted: rolling out revision 3 (rollback to revision 1)" {
		t.Errorf("event after rollout undo: %q; want it to say it rolls back to revision 1", ev)
	}
}

// An apply to a paused App used to be announced as a rollout although
// nothing rolls out until the resume; the resume is what is announced.
func TestPausedAppIsAnnouncedOnResume(t *testing.T) {
	ctx := context.Background()
	rec := &eventLog{}
	s, r, _ := runningV1(t, 1, rec)
	pause := func(p bool) {
		t.Helper()
		if _, err := store.Mutate(ctx, s, "default", "web", func(a *v1.App) error { a.Spec.Paused = p; return nil }); err != nil {
			t.Fatal(err)
		}
		storedApp(t, r, "web")
	}
	pause(true)
	saveApp(t, s, decodeApp(t, "kind: App\nname: web\nimage: web:v2\nreplicas: 1\npaused: true"))
	storedApp(t, r, "web")
	if n := rec.count("RolloutStarted"); n != 0 {
		t.Errorf("apply to a paused App: %d RolloutStarted events %v; want none", n, rec.events)
	}
	if _, err := r.reconcile(ctx, "default/web"); err != nil {
		t.Fatal(err)
	}
	if a := storedApp(t, r, "web"); a.Status.Phase != v1.AppPaused {
		t.Fatalf("setup: phase %s, want Paused", a.Status.Phase)
	}
	pause(false)
	if ev := rec.lastEvent("RolloutStarted"); ev != "RolloutStarted: resuming the rollout of revision 2 (template changed)" {
		t.Errorf("event on resume: %q", ev)
	}
}

package notify

import (
	"fmt"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// A deploy notification named the App's revision as the manager's
// informer held it when the event was observed, not the revision the
// event is about: the rollout controller writes an automatic rollback (a
// new revision) before it records ProgressDeadlineExceeded, so "failed"
// named the rollback's revision. The event's gantry.dev/revision label
// says which.
func TestDeployNotificationNamesTheEventsRevision(t *testing.T) {
	e := newEnv(t, true, nil)
	rcv := newReceiver(t, nil)
	e.notifier(t, "chat", v1.NotifierWebhook, rcv.URL+"/hook", "deploys")
	app := &v1.App{TypeMeta: v1.TypeMeta{Kind: "App"}, Metadata: v1.ObjectMeta{Name: "web", Namespace: "default"}}
	app.Spec.Image = "web:v1"
	// The rollback from revision 2 to the template of 1 is written as revision 3.
	app.Status = v1.AppStatus{Revision: 3, StableRevision: 3, Phase: v1.AppRolledBack}
	if err := e.store.Create(e.ctx, app); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the manager sees the app", func() bool { _, ok := e.m.apps.Get("default", "web"); return ok })
	e.m.ObserveEvent(&v1.Event{Metadata: v1.ObjectMeta{Name: "web.1.a", Namespace: "default",
		Labels: map[string]string{v1.LabelApp: "web", v1.LabelRevision: "2"}}, Type: v1.EventWarning,
		Reason: "ProgressDeadlineExceeded", Message: "revision 2 made no progress for 1m0s; rolling back to revision 1",
		Object: v1.ObjectRef{Kind: "App", Name: "web"}, Time: time.Now()})
	got := rcv.waitRequests(t, 1, 5*time.Second)
	p := got[0].json(t)
	if rev := fmt.Sprint(p["revision"]); rev != "2" {
		t.Errorf("failed-deploy notification for revision 2 says revision %s: %s", rev, got[0].body)
	}
}

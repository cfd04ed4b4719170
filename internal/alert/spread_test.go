package alert

import (
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/store"
)

// An alert is a rule's. One that fired for app web and then held for app
// api as well sent nothing about api, and when web recovered first, the
// resolved message named api alone: a receiver saw web fire and never
// resolve, and api resolve without having fired (review helper-160). A
// firing rule that holds for a new subject now sends another firing
// message, and the resolved one names every subject the alert fired for.
func TestAnAlertThatSpreadsSaysSoAndResolvesEverySubject(t *testing.T) {
	f := newFixture(t, nil)
	f.create(t, appObj("web", 1))
	f.create(t, inst("web-a", "web"))
	f.create(t, rule("ready", v1.AlertNotReady, 0))
	f.evaluate(t)

	f.create(t, appObj("api", 1))
	f.create(t, inst("api-a", "api"))
	f.clock.Advance(5 * time.Second)
	f.evaluate(t)

	setReady := func(name string) {
		t.Helper()
		i, err := store.Mutate(f.ctx, f.store, "default", name, func(i *v1.Instance) error { i.Status.Ready = true; return nil })
		if err != nil {
			t.Fatal(err)
		}
		f.seen(t, i)
		f.clock.Advance(5 * time.Second)
		f.evaluate(t)
	}
	setReady("web-a") // still firing, for api: nothing new to say
	setReady("api-a") // resolved

	msgs := f.sender.all()
	var got []string
	for _, m := range msgs {
		got = append(got, m.msg.Status+" "+m.msg.App+" "+strings.Join(m.msg.Subjects, ","))
	}
	want := []string{
		"firing web app/web",
		"firing  app/api,app/web",
		"resolved  app/api,app/web",
	}
	if !slices.Equal(got, want) {
		t.Errorf("notifications (status, app, subjects):\n%q\nwant\n%q", got, want)
	}
	if st := f.rule(t, "ready").Status; st.State != v1.AlertInactive || st.FiredSubjects != nil {
		t.Errorf("status after the resolve = %+v, want inactive without fired subjects", st)
	}
}

// An App whose work ends (restart policy on-failure) and whose instance
// has done it is Completed, not missing an instance: a not-ready rule
// fired for every finished batch App (review helper-162).
func TestASucceededInstanceIsNotMissing(t *testing.T) {
	f := newFixture(t, nil)
	job := appObj("job", 1)
	job.Spec.Template.RestartPolicy = v1.RestartOnFailure
	f.create(t, job)
	f.create(t, inst("job-a", "job", func(i *v1.Instance) { i.Status.Phase = v1.PhaseSucceeded }))
	f.create(t, rule("ready", v1.AlertNotReady, 0))
	f.evaluate(t)
	if st := f.rule(t, "ready").Status; st.State != v1.AlertInactive {
		t.Errorf("not-ready rule = %s (%s), want inactive: the App ran to completion", st.State, st.Message)
	}
}

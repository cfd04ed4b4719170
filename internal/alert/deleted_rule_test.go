package alert

import (
	"slices"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/store"
)

// A rule deleted while it fired left the firing notification as the last
// word at its receivers (a page never closed). Its alert now ends with a
// resolved message, before anything a new rule of the same name sends.
func TestDeletedFiringRuleSendsResolved(t *testing.T) {
	for _, recreate := range []bool{false, true} {
		name := "deleted"
		if recreate {
			name = "deleted and made again"
		}
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, nil)
			f.create(t, &v1.Node{TypeMeta: v1.TypeMeta{Kind: "Node"}, Metadata: v1.ObjectMeta{Name: "n1"}})
			f.create(t, rule("nodes", v1.AlertNodeNotReady, 0))
			f.evaluate(t)
			if st := f.rule(t, "nodes").Status; st.State != v1.AlertFiring {
				t.Fatalf("setup: the rule does not fire: %+v", st)
			}
			if _, err := f.store.Delete(f.ctx, store.KindFor[*v1.AlertRule](), "default", "nodes", 0); err != nil {
				t.Fatal(err)
			}
			eventually(t, "the evaluator sees the rule go", func() bool { _, ok := f.e.rules.Get("default", "nodes"); return !ok })
			if recreate {
				f.create(t, rule("nodes", v1.AlertNodeNotReady, 0))
			}
			f.clock.Advance(5 * time.Second)
			f.evaluate(t)
			f.clock.Advance(5 * time.Second)
			f.evaluate(t)
			var got []string
			for _, m := range f.sender.all() {
				got = append(got, m.msg.Status)
			}
			want := []string{"firing", "resolved"}
			if recreate {
				want = append(want, "firing")
			}
			if !slices.Equal(got, want) {
				t.Fatalf("notifications: %v; want %v", got, want)
			}
			msgs := f.sender.all()
			if r := msgs[1].msg; r.Rule != "nodes" || !slices.Equal(r.Subjects, msgs[0].msg.Subjects) || !r.Since.Equal(*msgs[0].msg.Since) {
				t.Errorf("the resolved message: %+v; want the rule, and the firing's subjects and since", r)
			}
		})
	}
}

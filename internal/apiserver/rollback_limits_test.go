package apiserver_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/store"
)

// A rollback restores a revision's template exactly, so that the
// instances of that revision still running count as current (the rollback
// is instant, docs/guide.md). The admission of the restored template used
// to fill in namespace limit defaults set after that revision was made
// (64Mi became 128Mi), so the new revision's hash differed and every
// instance still running revision 1 was replaced.
func TestRollbackKeepsTheTemplateDespiteNewLimitDefaults(t *testing.T) {
	ts, c := withRevisions(t, "hello", "image: hello:v1")
	ctx := context.Background()
	// The admin adds a default memory for the namespace afterwards.
	if _, err := store.Mutate(ctx, ts.Store, "", "default", func(n *v1.Namespace) error {
		n.Spec.Limits = &v1.LimitDefaults{DefaultMemory: 128 << 20}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Apply(ctx, rolloutApp(t, "hello", "image: hello:v2")); err != nil {
		t.Fatal(err)
	}
	a, err := c.Rollback(ctx, "default", "hello", 1)
	if err != nil {
		t.Fatal(err)
	}
	r1, err := store.Get[*v1.Revision](ctx, ts.Store, "default", v1.RevisionName("hello", 1))
	if err != nil {
		t.Fatal(err)
	}
	r3, err := store.Get[*v1.Revision](ctx, ts.Store, "default", v1.RevisionName("hello", a.Status.Revision))
	if err != nil {
		t.Fatal(err)
	}
	if r3.Spec.Hash != r1.Spec.Hash || a.Spec.Template.Resources.Memory != r1.Spec.Template.Resources.Memory {
		t.Errorf("rollback to revision 1 made revision %d with memory %s (revision 1 has %s): template hash %s != %s, so revision 1's running instances are all replaced instead of kept",
			a.Status.Revision, r3.Spec.Template.Resources.Memory, r1.Spec.Template.Resources.Memory, r3.Spec.Hash, r1.Spec.Hash)
	}
}

// A rollback is judged by the template it stores. Admission used to judge
// a copy with today's default memory filled in (32Mi), which passed a
// maximum of 32Mi, and then stored revision 1's 64Mi: the App ran above
// the namespace's per-container maximum.
func TestRollbackRefusesATemplateOverTodaysMaximum(t *testing.T) {
	ts, c := withRevisions(t, "hello", "image: hello:v1")
	ctx := context.Background()
	if _, err := store.Mutate(ctx, ts.Store, "", "default", func(n *v1.Namespace) error {
		n.Spec.Limits = &v1.LimitDefaults{DefaultMemory: 32 << 20, MaxMemory: 32 << 20}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// Revision 2 takes the new default, and fits.
	if _, err := c.Apply(ctx, rolloutApp(t, "hello", "image: hello:v2")); err != nil {
		t.Fatal(err)
	}
	r1, err := store.Get[*v1.Revision](ctx, ts.Store, "default", v1.RevisionName("hello", 1))
	if err != nil {
		t.Fatal(err)
	}
	if r1.Spec.Template.Resources.Memory <= 32<<20 {
		t.Fatalf("revision 1 has memory %s: the test needs it above the new maximum", r1.Spec.Template.Resources.Memory)
	}
	_, err = c.Rollback(ctx, "default", "hello", 1)
	if !errors.Is(err, v1.ErrQuotaExceeded) || !strings.Contains(err.Error(), "maximum 32Mi") {
		t.Fatalf("rollback to a revision over the namespace's maximum memory: err = %v, want a refusal naming the maximum", err)
	}
	a, err := store.Get[*v1.App](ctx, ts.Store, "default", "hello")
	if err != nil {
		t.Fatal(err)
	}
	if a.Status.Revision != 2 || a.Spec.Template.Resources.Memory != 32<<20 {
		t.Errorf("after the refused rollback the App is on revision %d with memory %s, want revision 2 with 32Mi", a.Status.Revision, a.Spec.Template.Resources.Memory)
	}
}

// A rollback whose template clashes with the App's other fields (a route
// on a port the old template does not name) was refused with a bare
// "1 invalid field(s)" about a field the caller never sent. It is a 422
// that names the revision and what to change.
func TestRollbackRefusedByValidationSaysWhatClashes(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	c := ts.client(t, ts.Token)
	ctx := context.Background()
	for _, m := range []string{
		"kind: App\nname: web\nimage: web:v1\nports: [{port: 8080}]\n",
		"kind: App\nname: web\nimage: web:v2\nports: [{name: site, port: 8080}]\nroutes: [{host: x.example.com, port: site}]\n",
	} {
		o, err := v1.DecodeManifest([]byte(m))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Apply(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	_, err := c.Rollback(ctx, "default", "web", 1)
	var se *v1.StatusError
	if !errors.As(err, &se) || se.Status.Code != 422 ||
		!strings.Contains(se.Status.Message, "the template of revision 1 does not fit") || !strings.Contains(se.Status.Message, `no http port named "site"`) {
		t.Fatalf("rollback: %v; want a 422 naming revision 1 and the clash", err)
	}
	a, err := store.Get[*v1.App](ctx, ts.Store, "default", "web")
	if err != nil || a.Status.Revision != 2 || a.Spec.Template.Image != "web:v2" {
		t.Fatalf("the refused rollback changed the App: revision %d, image %s (%v)", a.Status.Revision, a.Spec.Template.Image, err)
	}
}

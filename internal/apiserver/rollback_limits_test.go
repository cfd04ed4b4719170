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

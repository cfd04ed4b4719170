package apiserver

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/store/storetest"
)

// A sweep of every namespace deletes what sits in a namespace that does
// not exist, but not what is in one made between its list of namespaces
// and its deletes: each delete holds only while the namespace is absent.
func TestSweepSparesANamespaceMadeMeanwhile(t *testing.T) {
	e := storetest.EmbeddedIn(t, t.TempDir())
	st := store.New(e.Client, "")
	s := New(Config{}, st, nil, nil, slog.New(slog.DiscardHandler))
	ctx := context.Background()
	for _, ns := range []string{"late", "gone"} {
		a := &v1.App{TypeMeta: v1.TypeMeta{Kind: "App"}, Metadata: v1.ObjectMeta{Name: "web", Namespace: ns}, Spec: v1.AppSpec{Template: v1.Template{Image: "web:v1"}}}
		if err := st.Create(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	sweepListed = func() {
		ns := &v1.Namespace{TypeMeta: v1.TypeMeta{Kind: "Namespace"}, Metadata: v1.ObjectMeta{Name: "late"}}
		if err := st.Create(ctx, ns); err != nil {
			t.Error(err)
		}
	}
	t.Cleanup(func() { sweepListed = func() {} })
	if err := s.sweep(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Get[*v1.App](ctx, st, "late", "web"); err != nil {
		t.Errorf("the App of a namespace made during the sweep: %v; want it kept", err)
	}
	if _, err := store.Get[*v1.App](ctx, st, "gone", "web"); !errors.Is(err, v1.ErrNotFound) {
		t.Errorf("the App of a namespace that does not exist: %v; want it deleted", err)
	}
}

// A namespace left marked as being deleted (its delete stopped half-way)
// is deleted, contents first, by the next sweep once it has been marked
// for resumeDeleteAfter.
func TestSweepFinishesAStoppedDelete(t *testing.T) {
	e := storetest.EmbeddedIn(t, t.TempDir())
	st := store.New(e.Client, "")
	s := New(Config{}, st, nil, nil, slog.New(slog.DiscardHandler))
	ctx := context.Background()
	for _, name := range []string{"stuck", "fresh"} {
		at := time.Now().UTC().Add(-2 * resumeDeleteAfter)
		if name == "fresh" {
			at = time.Now().UTC()
		}
		ns := &v1.Namespace{TypeMeta: v1.TypeMeta{Kind: "Namespace"}, Metadata: v1.ObjectMeta{Name: name, Deleting: &at}}
		if err := st.Create(ctx, ns); err != nil {
			t.Fatal(err)
		}
		sec := &v1.Secret{TypeMeta: v1.TypeMeta{Kind: "Secret"}, Metadata: v1.ObjectMeta{Name: "db", Namespace: name}}
		if err := st.Create(ctx, sec); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.sweep(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Get[*v1.Namespace](ctx, st, "", "stuck"); !errors.Is(err, v1.ErrNotFound) {
		t.Errorf("a namespace marked long ago: %v; want it deleted", err)
	}
	if _, err := store.Get[*v1.Secret](ctx, st, "stuck", "db"); !errors.Is(err, v1.ErrNotFound) {
		t.Errorf("its secret: %v; want it deleted", err)
	}
	if _, err := store.Get[*v1.Namespace](ctx, st, "", "fresh"); err != nil {
		t.Errorf("a namespace whose delete is under way: %v; want it left to that delete", err)
	}
}

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

// A namespace's role bindings were deleted only after the namespace: a
// server that stopped in between (or an etcd error there) left bindings
// of a namespace that no longer existed, which no sweep deletes (it
// covers namespaced kinds) and a later namespace of the same name would
// grant again. They go first, while the namespace is marked and a
// resumed delete would redo them.
func TestNamespaceDeleteRemovesItsBindingsFirst(t *testing.T) {
	e := storetest.EmbeddedIn(t, t.TempDir())
	st := store.New(e.Client, "")
	s := New(Config{}, st, nil, nil, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ns := &v1.Namespace{TypeMeta: v1.TypeMeta{Kind: "Namespace"}, Metadata: v1.ObjectMeta{Name: "team"}}
	if err := st.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	b := &v1.RoleBinding{TypeMeta: v1.TypeMeta{Kind: "RoleBinding"}, Metadata: v1.ObjectMeta{Name: "carol-team"},
		Spec: v1.RoleBindingSpec{User: "carol", Role: "admin", Namespace: "team"}}
	if err := st.Create(ctx, b); err != nil {
		t.Fatal(err)
	}
	rev, err := st.Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	deletedAt := func(k *v1.KindInfo, name string) <-chan int64 {
		out := make(chan int64, 1)
		events := st.Watch(ctx, k, store.WatchOptions{Name: name, Revision: rev + 1})
		go func() {
			for ev := range events {
				if ev.Type == store.Deleted {
					out <- ev.Revision
					return
				}
			}
		}()
		return out
	}
	nsGone := deletedAt(store.KindFor[*v1.Namespace](), "team")
	bindingGone := deletedAt(store.KindFor[*v1.RoleBinding](), "carol-team")
	if _, err := s.deleteNamespace(ctx, "team", 0); err != nil {
		t.Fatal(err)
	}
	var nsRev, bRev int64
	for _, c := range []struct {
		ch  <-chan int64
		rev *int64
	}{{nsGone, &nsRev}, {bindingGone, &bRev}} {
		select {
		case *c.rev = <-c.ch:
		case <-ctx.Done():
			t.Fatal("no delete event seen")
		}
	}
	if bRev > nsRev {
		t.Fatalf("the binding was deleted at revision %d, after its namespace (%d)", bRev, nsRev)
	}
}

// FitReplicas, asked for 10,000 under a quota of 2 instances, finds 2 (from
// one listing of the namespace, not one per count tried, under the
// namespace's quota lock).
func TestFitReplicasUnderAnInstanceQuota(t *testing.T) {
	e := storetest.EmbeddedIn(t, t.TempDir())
	st := store.New(e.Client, "")
	s := New(Config{}, st, nil, nil, slog.New(slog.DiscardHandler))
	ctx := context.Background()
	ns := &v1.Namespace{TypeMeta: v1.TypeMeta{Kind: "Namespace"}, Metadata: v1.ObjectMeta{Name: "q"}}
	ns.Spec.Quota = &v1.Quota{Instances: 2}
	if err := st.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	o, err := v1.DecodeManifest([]byte("kind: App\nname: a\nnamespace: q\nimage: x:v1\nautoscale: {min: 1, max: 10000, targetRequestsPerSecond: 1}\n"))
	if err != nil {
		t.Fatal(err)
	}
	a := o.(*v1.App)
	if err := st.Create(ctx, a); err != nil {
		t.Fatal(err)
	}
	if n, err := s.FitReplicas(ctx, a, 10000); err != nil || n != 2 {
		t.Fatalf("FitReplicas(10000) = %d, %v; want 2", n, err)
	}
}

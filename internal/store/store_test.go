package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/store/storetest"
)

func app(ns, name, image string) *v1.App {
	a := &v1.App{TypeMeta: v1.TypeMeta{Kind: "App"}, Metadata: v1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"team": "web"}}}
	a.Spec.Image = image
	return a
}

var appKind = store.KindFor[*v1.App]()

func TestCRUD(t *testing.T) {
	ctx := context.Background()
	s := storetest.New(t)

	a := app("default", "hello", "hello:v1")
	if err := s.Create(ctx, a); err != nil {
		t.Fatalf("create: %v", err)
	}
	if a.Metadata.Revision == 0 || a.Metadata.UID == "" || a.Metadata.Created.IsZero() {
		t.Fatalf("create did not fill revision, uid, created: %+v", a.Metadata)
	}
	t.Run("create of an existing name fails with ErrAlreadyExists", func(t *testing.T) {
		err := s.Create(ctx, app("default", "hello", "other"))
		if !errors.Is(err, v1.ErrAlreadyExists) {
			t.Fatalf("err = %v, want ErrAlreadyExists", err)
		}
	})
	t.Run("get returns what was created, at its revision", func(t *testing.T) {
		got, err := store.Get[*v1.App](ctx, s, "default", "hello")
		if err != nil {
			t.Fatal(err)
		}
		if got.Spec.Image != "hello:v1" || got.Metadata.Revision != a.Metadata.Revision || got.Metadata.UID != a.Metadata.UID {
			t.Fatalf("got %+v", got.Metadata)
		}
	})
	t.Run("get of a missing object fails with ErrNotFound", func(t *testing.T) {
		_, err := store.Get[*v1.App](ctx, s, "default", "nope")
		if !errors.Is(err, v1.ErrNotFound) {
			t.Fatalf("err = %v, want ErrNotFound", err)
		}
	})
	t.Run("update with the read revision succeeds and bumps it", func(t *testing.T) {
		old := a.Metadata.Revision
		a.Spec.Image = "hello:v2"
		if err := s.Update(ctx, a); err != nil {
			t.Fatal(err)
		}
		if a.Metadata.Revision <= old {
			t.Fatalf("revision %d not above %d", a.Metadata.Revision, old)
		}
	})
	t.Run("update with a stale revision fails with ErrConflict", func(t *testing.T) {
		stale := *a
		stale.Metadata.Revision--
		err := s.Update(ctx, &stale)
		if !errors.Is(err, v1.ErrConflict) {
			t.Fatalf("err = %v, want ErrConflict", err)
		}
	})
	t.Run("update without a revision is refused", func(t *testing.T) {
		b := app("default", "hello", "x")
		if err := s.Update(ctx, b); !errors.Is(err, v1.ErrInvalid) {
			t.Fatalf("err = %v, want ErrInvalid", err)
		}
	})
	t.Run("update of a missing object fails with ErrNotFound", func(t *testing.T) {
		b := app("default", "ghost", "x")
		b.Metadata.Revision = 5
		if err := s.Update(ctx, b); !errors.Is(err, v1.ErrNotFound) {
			t.Fatalf("err = %v, want ErrNotFound", err)
		}
	})
	t.Run("list filters by namespace and selector", func(t *testing.T) {
		for _, x := range []*v1.App{app("default", "b", "i"), app("other", "c", "i")} {
			if err := s.Create(ctx, x); err != nil {
				t.Fatal(err)
			}
		}
		untagged := app("default", "d", "i")
		untagged.Metadata.Labels = nil
		if err := s.Create(ctx, untagged); err != nil {
			t.Fatal(err)
		}
		all, rev, err := store.List[*v1.App](ctx, s, store.ListOptions{})
		if err != nil || len(all) != 4 || rev == 0 {
			t.Fatalf("all: %d objects, rev %d, err %v", len(all), rev, err)
		}
		def, _, _ := store.List[*v1.App](ctx, s, store.ListOptions{Namespace: "default"})
		if len(def) != 3 {
			t.Fatalf("default: %d objects, want 3", len(def))
		}
		sel, _ := v1.ParseSelector("team=web")
		web, _, _ := store.List[*v1.App](ctx, s, store.ListOptions{Namespace: "default", Selector: sel})
		if len(web) != 2 {
			t.Fatalf("team=web in default: %d objects, want 2", len(web))
		}
	})
	t.Run("delete with a stale revision fails, then succeeds", func(t *testing.T) {
		if _, err := s.Delete(ctx, appKind, "default", "hello", a.Metadata.Revision-1); !errors.Is(err, v1.ErrConflict) {
			t.Fatalf("err = %v, want ErrConflict", err)
		}
		old, err := s.Delete(ctx, appKind, "default", "hello", a.Metadata.Revision)
		if err != nil || old.(*v1.App).Spec.Image != "hello:v2" {
			t.Fatalf("delete: %v, %+v", err, old)
		}
		if _, err := s.Delete(ctx, appKind, "default", "hello", 0); !errors.Is(err, v1.ErrNotFound) {
			t.Fatalf("second delete err = %v, want ErrNotFound", err)
		}
	})
}

// TestConcurrentUpdatesExactlyOneWins races many writers that all read the
// same revision: etcd's compare-and-swap must let exactly one through.
func TestConcurrentUpdatesExactlyOneWins(t *testing.T) {
	ctx := context.Background()
	s := storetest.New(t)
	for round := 0; round < 20; round++ {
		name := fmt.Sprintf("race-%d", round)
		a := app("default", name, "base")
		if err := s.Create(ctx, a); err != nil {
			t.Fatal(err)
		}
		base := a.Metadata.Revision
		const writers = 32
		var ok, conflicts atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				mine := app("default", name, fmt.Sprintf("writer-%d", w))
				mine.Metadata.Revision = base
				mine.Metadata.UID = a.Metadata.UID
				<-start
				err := s.Update(ctx, mine)
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, v1.ErrConflict):
					conflicts.Add(1)
				default:
					t.Errorf("writer %d: %v", w, err)
				}
			}()
		}
		close(start)
		wg.Wait()
		if ok.Load() != 1 || conflicts.Load() != writers-1 {
			t.Fatalf("round %d: %d succeeded and %d conflicted, want 1 and %d", round, ok.Load(), conflicts.Load(), writers-1)
		}
	}
}

func TestMutateRetriesConflicts(t *testing.T) {
	ctx := context.Background()
	s := storetest.New(t)
	if err := s.Create(ctx, app("default", "counter", "i")); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 5; i++ {
				_, err := store.Mutate(ctx, s, "default", "counter", func(a *v1.App) error {
					a.Status.Replicas++
					return nil
				})
				if err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	got, _ := store.Get[*v1.App](ctx, s, "default", "counter")
	if got.Status.Replicas != 80 {
		t.Fatalf("counter = %d, want 80: an increment was lost", got.Status.Replicas)
	}
}

func TestTxnIsAllOrNothing(t *testing.T) {
	ctx := context.Background()
	s := storetest.New(t)
	if err := s.Create(ctx, app("default", "taken", "i")); err != nil {
		t.Fatal(err)
	}
	err := s.Txn().Create(app("default", "fresh", "i")).Create(app("default", "taken", "i")).Commit(ctx)
	if !errors.Is(err, v1.ErrConflict) {
		t.Fatalf("err = %v, want ErrConflict", err)
	}
	if _, err := store.Get[*v1.App](ctx, s, "default", "fresh"); !errors.Is(err, v1.ErrNotFound) {
		t.Fatalf("a failed transaction left a partial write: %v", err)
	}
}

func collect(t *testing.T, ch <-chan store.Event, n int) []store.Event {
	t.Helper()
	var out []store.Event
	timeout := time.After(10 * time.Second)
	for len(out) < n {
		select {
		case e, ok := <-ch:
			if !ok {
				t.Fatalf("watch closed after %d events, want %d", len(out), n)
			}
			if e.Type == store.Error {
				t.Fatalf("watch error: %v", e.Err)
			}
			out = append(out, e)
		case <-timeout:
			t.Fatalf("got %d events, want %d", len(out), n)
		}
	}
	return out
}

func TestWatchResumesAcrossRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	e := storetest.EmbeddedIn(t, dir)
	s := store.New(e.Client, "")

	_, rev0, err := s.List(ctx, appKind, store.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	ch := s.Watch(wctx, appKind, store.WatchOptions{Revision: rev0 + 1})
	a := app("default", "w", "v1")
	if err := s.Create(ctx, a); err != nil {
		t.Fatal(err)
	}
	a.Spec.Image = "v2"
	if err := s.Update(ctx, a); err != nil {
		t.Fatal(err)
	}
	got := collect(t, ch, 2)
	cancel()
	if got[0].Type != store.Added || got[1].Type != store.Modified || got[1].Object.(*v1.App).Spec.Image != "v2" {
		t.Fatalf("events: %v %v", got[0].Type, got[1].Type)
	}
	last := got[1].Revision

	// Changes made while nobody watches, then a restart of etcd.
	a.Spec.Image = "v3"
	if err := s.Update(ctx, a); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Delete(ctx, appKind, "default", "w", 0); err != nil {
		t.Fatal(err)
	}
	e.Close()
	e2 := storetest.EmbeddedIn(t, dir)
	s2 := store.New(e2.Client, "")
	if err := s2.Create(ctx, app("default", "after", "v1")); err != nil {
		t.Fatal(err)
	}

	ch2 := s2.Watch(ctx, appKind, store.WatchOptions{Revision: last + 1})
	rest := collect(t, ch2, 3)
	want := []struct {
		typ   store.EventType
		name  string
		image string
	}{{store.Modified, "w", "v3"}, {store.Deleted, "w", "v3"}, {store.Added, "after", "v1"}}
	for i, w := range want {
		a := rest[i].Object.(*v1.App)
		if rest[i].Type != w.typ || a.Metadata.Name != w.name || a.Spec.Image != w.image {
			t.Errorf("event %d = %s %s %s, want %s %s %s", i, rest[i].Type, a.Metadata.Name, a.Spec.Image, w.typ, w.name, w.image)
		}
		if i > 0 && rest[i].Revision <= rest[i-1].Revision {
			t.Errorf("event %d revision %d not after %d", i, rest[i].Revision, rest[i-1].Revision)
		}
	}
	select {
	case e := <-ch2:
		t.Fatalf("unexpected extra event %s", e.Type)
	case <-time.After(200 * time.Millisecond):
	}
}

func TestWatchAfterCompactionAsksForResync(t *testing.T) {
	ctx := context.Background()
	e := storetest.Embedded(t)
	s := store.New(e.Client, "")
	a := app("default", "c", "v1")
	if err := s.Create(ctx, a); err != nil {
		t.Fatal(err)
	}
	first := a.Metadata.Revision
	for i := 0; i < 5; i++ {
		a.Spec.Image = fmt.Sprint("v", i+2)
		if err := s.Update(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.Client.Compact(ctx, a.Metadata.Revision); err != nil {
		t.Fatal(err)
	}
	ch := s.Watch(ctx, appKind, store.WatchOptions{Revision: first})
	select {
	case ev := <-ch:
		if ev.Type != store.Error || !errors.Is(ev.Err, v1.ErrResyncRequired) {
			t.Fatalf("got %s %v, want an Error with ErrResyncRequired", ev.Type, ev.Err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no resync signal")
	}
}

func TestHeartbeatExpiry(t *testing.T) {
	ctx := context.Background()
	s := storetest.New(t)
	hb := s.Heartbeats("nodes", time.Second)
	_, rev, _ := hb.Alive(ctx)
	ch := hb.Watch(ctx, rev+1)
	if err := hb.Beat(ctx, "n1"); err != nil {
		t.Fatal(err)
	}
	alive, _, _ := hb.Alive(ctx)
	if !alive["n1"] {
		t.Fatal("n1 not alive after a beat")
	}
	var sawUp, sawDown bool
	deadline := time.After(15 * time.Second)
	for !sawDown {
		select {
		case ev := <-ch:
			if ev.Err != nil {
				t.Fatal(ev.Err)
			}
			if ev.Name == "n1" && ev.Alive {
				sawUp = true
			}
			if ev.Name == "n1" && !ev.Alive {
				sawDown = true
			}
		case <-deadline:
			t.Fatalf("lease did not expire (up=%v)", sawUp)
		}
	}
}

// A write larger than etcd takes is the client's mistake, not the
// store's being away: ErrTooLarge (413), never ErrUnavailable (503, which
// says to retry), and nothing is written.
func TestAWriteTooLargeIsTooLargeNotUnavailable(t *testing.T) {
	ctx := context.Background()
	s := storetest.New(t)
	for _, size := range []int{store.MaxWriteBytes + 100<<10, 3 << 20} { // etcd's own limit, then gRPC's
		a := app("default", fmt.Sprintf("big%d", size), "big:v1")
		a.Spec.Env = []v1.EnvVar{{Name: "BLOB", Value: strings.Repeat("a", size)}}
		err := s.Create(ctx, a)
		if !errors.Is(err, v1.ErrTooLarge) || errors.Is(err, v1.ErrUnavailable) {
			t.Errorf("create of a %d-byte app: %v; want ErrTooLarge", size, err)
		}
		if _, err := s.Get(ctx, appKind, "default", a.Metadata.Name); !errors.Is(err, v1.ErrNotFound) {
			t.Errorf("after the refused create: get %v, want not found", err)
		}
	}
}

// A list read at an earlier revision returns that revision, not the
// current one: a watch resumed from the current revision would skip the
// changes in between.
func TestListAtARevisionReturnsThatRevision(t *testing.T) {
	ctx := context.Background()
	s := storetest.New(t)
	a := app("default", "web", "web:v1")
	if err := s.Create(ctx, a); err != nil {
		t.Fatal(err)
	}
	then := a.Metadata.Revision
	a.Spec.Image = "web:v2"
	if err := s.Update(ctx, a); err != nil {
		t.Fatal(err)
	}
	objs, rev, err := s.List(ctx, appKind, store.ListOptions{Namespace: "default", Revision: then})
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 1 || objs[0].(*v1.App).Spec.Image != "web:v1" {
		t.Fatalf("list at revision %d: %v, want web at web:v1", then, objs)
	}
	if rev != then {
		t.Errorf("list at revision %d says it was read at %d (the current revision is %d)", then, rev, a.Metadata.Revision)
	}
}

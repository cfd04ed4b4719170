package informer

import (
	"context"
	"log/slog"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/store/storetest"
)

func waitUntil(t *testing.T, ctx context.Context, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatal("timed out")
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// A writer Observes its own write (as rollout.go does after Mutate, even
// after an ErrUnchanged read) but the watch has already delivered both that
// write and a later delete of the object by someone else (the agent
// finalizing an instance). Observe put the deleted object back in the
// cache, and no watch event would ever remove it: a ghost until the next
// relist (only after a watch error/compaction).
func TestObserveAfterAWatchedDeleteLeavesNoGhost(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s := storetest.New(t)
	inf := New[*v1.Secret](s, slog.New(slog.DiscardHandler))
	go inf.Run(ctx)
	<-inf.Synced()

	sec := secretAt(0)
	if err := s.Create(ctx, sec); err != nil {
		t.Fatal(err)
	}
	// The controller's write (what Mutate returns).
	out, err := store.Mutate(ctx, s, "default", "db", func(x *v1.Secret) error {
		x.Metadata.Labels = map[string]string{"a": "b"}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Someone else deletes it, and the informer's watch processes it
	// before the controller gets round to Observe.
	if _, err := s.Delete(ctx, store.KindFor[*v1.Secret](), "default", "db", 0); err != nil {
		t.Fatal(err)
	}
	del, _ := s.Revision(ctx)
	waitUntil(t, ctx, func() bool { return inf.Revision() >= del })
	waitUntil(t, ctx, func() bool { _, ok := inf.Get("default", "db"); return !ok })

	inf.Observe(out)

	// Let the watch run a while (bookmarks etc.); nothing removes it.
	time.Sleep(300 * time.Millisecond)
	if o, ok := inf.Get("default", "db"); ok {
		t.Errorf("informer caches secret default/db at revision %d although it was deleted at %d (informer revision %d): Observe of a write older than what the watch already applied resurrected it",
			o.Metadata.Revision, del, inf.Revision())
	}
}

// Revision() is documented as "the newest store revision the cache has
// caught up with", and discovery stamps snapshots with it. But seen() ran
// before apply(), per event: for a transaction writing two objects (one
// revision), Revision() already said R while the second object of R was
// not yet in the cache.
func TestRevisionWaitsForTheWholeTransaction(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s := storetest.New(t)
	inf := New[*v1.Secret](s, slog.New(slog.DiscardHandler))
	type obs struct {
		rev      int64
		otherIn  bool
		name     string
		eventRev int64
	}
	got := make(chan obs, 4)
	inf.OnChange(func(_, cur *v1.Secret, _ bool) {
		other := "b"
		if cur.Metadata.Name == "b" {
			other = "a"
		}
		_, in := inf.Get("default", other)
		got <- obs{rev: inf.Revision(), otherIn: in, name: cur.Metadata.Name, eventRev: cur.Metadata.Revision}
	})
	go inf.Run(ctx)
	<-inf.Synced()
	a := &v1.Secret{TypeMeta: v1.TypeMeta{Kind: "Secret"}, Metadata: v1.ObjectMeta{Namespace: "default", Name: "a"}}
	b := &v1.Secret{TypeMeta: v1.TypeMeta{Kind: "Secret"}, Metadata: v1.ObjectMeta{Namespace: "default", Name: "b"}}
	if err := s.Txn().Create(a).Create(b).Commit(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case o := <-got:
		if o.rev >= o.eventRev && !o.otherIn {
			t.Errorf("while handling %s: informer.Revision()=%d (the txn's revision %d) but the other object written at that revision is not in the cache",
				o.name, o.rev, o.eventRev)
		}
	case <-ctx.Done():
		t.Fatal("no notification")
	}
}

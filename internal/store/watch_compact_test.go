package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/store/storetest"
)

// A watch may start at the revision etcd compacted at (that revision is
// still in history), but the previous value of a key changed at that very
// revision is gone, so etcd sends the event without it. The watcher must
// still learn that the object is gone for it: before, the delete was
// dropped, and so was a relabel out of a selector, and the watcher kept
// a ghost.
func TestWatchFromTheCompactionRevision(t *testing.T) {
	team := func(t *testing.T) v1.Selector {
		t.Helper()
		sel, err := v1.ParseSelector("team=web")
		if err != nil {
			t.Fatal(err)
		}
		return sel
	}
	tests := []struct {
		name     string
		selector func(*testing.T) v1.Selector
		// change is the last write before the compaction, to web.
		change func(ctx context.Context, s *store.Store, web *v1.App) error
		// wantResync: the watch ends with ErrResyncRequired; otherwise
		// it reports web DELETED.
		wantResync bool
	}{
		{
			name:     "a delete at that revision ends the watch with a resync",
			selector: func(*testing.T) v1.Selector { return nil },
			change: func(ctx context.Context, s *store.Store, web *v1.App) error {
				_, err := s.Delete(ctx, appKind, "default", "web", 0)
				return err
			},
			wantResync: true,
		},
		{
			name:     "a delete at that revision ends a selector watch with a resync",
			selector: team,
			change: func(ctx context.Context, s *store.Store, web *v1.App) error {
				_, err := s.Delete(ctx, appKind, "default", "web", 0)
				return err
			},
			wantResync: true,
		},
		{
			name:     "a relabel out of the selector at that revision is reported as DELETED",
			selector: team,
			change: func(ctx context.Context, s *store.Store, web *v1.App) error {
				web.Metadata.Labels = map[string]string{"team": "other"}
				return s.Update(ctx, web)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			e := storetest.Embedded(t)
			s := store.New(e.Client, "")
			web := app("default", "web", "web:v1") // labels team=web
			if err := s.Create(ctx, web); err != nil {
				t.Fatal(err)
			}
			if err := tt.change(ctx, s, web); err != nil {
				t.Fatal(err)
			}
			rev, err := s.Revision(ctx) // the change's revision
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.Client.Compact(ctx, rev); err != nil {
				t.Fatal(err)
			}
			ch := s.Watch(ctx, appKind, store.WatchOptions{Namespace: "default", Selector: tt.selector(t), Revision: rev})
			// A marker that matches, to know the watch has caught up.
			if err := s.Create(ctx, app("default", "marker", "m:v1")); err != nil {
				t.Fatal(err)
			}
			for ev := range ch {
				switch {
				case ev.Type == store.Error && tt.wantResync && errors.Is(ev.Err, v1.ErrResyncRequired):
					return
				case ev.Type == store.Error:
					t.Fatalf("watch from revision %d ended with %v", rev, ev.Err)
				case ev.Object.GetMeta().Name == "web" && ev.Type == store.Deleted && !tt.wantResync:
					return
				case ev.Object.GetMeta().Name == "marker":
					t.Fatalf("watch from revision %d (the compaction point) said nothing of the change to web at that revision", rev)
				default:
					t.Fatalf("watch from revision %d: unexpected %s of %s", rev, ev.Type, ev.Object.GetMeta().Name)
				}
			}
			t.Fatal("watch closed without an event")
		})
	}
}

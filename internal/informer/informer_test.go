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

func secretAt(rev int64) *v1.Secret {
	return &v1.Secret{TypeMeta: v1.TypeMeta{Kind: "Secret"}, Metadata: v1.ObjectMeta{Namespace: "default", Name: "db", Revision: rev}}
}

// Watch events that arrive after the writer recorded a newer version with
// Observe are skipped, deletes included: a late DELETED of the old object
// (deleted, then made again under the same name) used to remove the new
// one and tell handlers it was gone.
func TestApplySkipsEventsOlderThanTheCache(t *testing.T) {
	tests := []struct {
		name        string
		ev          store.Event
		wantCached  int64 // revision left in the cache; 0: none
		wantChanges int
		wantDeletes int
	}{
		{
			name:       "a DELETED older than the cached object leaves it",
			ev:         store.Event{Type: store.Deleted, Object: secretAt(10), Revision: 10},
			wantCached: 20,
		},
		{
			name:        "a DELETED newer than the cached object removes it",
			ev:          store.Event{Type: store.Deleted, Object: secretAt(21), Revision: 21},
			wantDeletes: 1,
		},
		{
			name:       "a MODIFIED older than the cached object is skipped",
			ev:         store.Event{Type: store.Modified, Object: secretAt(15), Revision: 15},
			wantCached: 20,
		},
		{
			name:        "a MODIFIED newer than the cached object replaces it",
			ev:          store.Event{Type: store.Modified, Object: secretAt(25), Revision: 25},
			wantCached:  25,
			wantChanges: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inf := New[*v1.Secret](nil, slog.New(slog.DiscardHandler))
			inf.Observe(secretAt(20)) // the writer's own, newest version
			var changes, deletes int
			inf.OnChange(func(_, _ *v1.Secret, deleted bool) {
				if deleted {
					deletes++
				} else {
					changes++
				}
			})
			inf.apply(tt.ev, true)
			var cached int64
			if o, ok := inf.Get("default", "db"); ok {
				cached = o.Metadata.Revision
			}
			if cached != tt.wantCached || changes != tt.wantChanges || deletes != tt.wantDeletes {
				t.Errorf("after %s at %d over a cache at 20: cached at %d, %d change(s), %d delete(s); want %d, %d, %d",
					tt.ev.Type, tt.ev.Revision, cached, changes, deletes, tt.wantCached, tt.wantChanges, tt.wantDeletes)
			}
		})
	}
}

// The store's DELETED events carry the delete's revision, so a real delete
// through a real watch still removes the cached object.
func TestADeleteInTheStoreRemovesTheCachedObject(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s := storetest.New(t)
	inf := New[*v1.Secret](s, slog.New(slog.DiscardHandler))
	deleted := make(chan struct{}, 1)
	inf.OnChange(func(_, _ *v1.Secret, gone bool) {
		if gone {
			deleted <- struct{}{}
		}
	})
	sec := secretAt(0)
	if err := s.Create(ctx, sec); err != nil {
		t.Fatal(err)
	}
	go inf.Run(ctx)
	<-inf.Synced()
	// The writer's own write, seen before the watch delivers the delete.
	inf.Observe(sec)
	if _, err := s.Delete(ctx, store.KindFor[*v1.Secret](), "default", "db", 0); err != nil {
		t.Fatal(err)
	}
	select {
	case <-deleted:
	case <-ctx.Done():
		t.Fatal("no delete notification")
	}
	if _, ok := inf.Get("default", "db"); ok {
		t.Error("the deleted secret is still cached")
	}
}

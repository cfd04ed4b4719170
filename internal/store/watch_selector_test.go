package store_test

import (
	"context"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/store/storetest"
)

// A watch with a label selector tells the watcher, with a DELETED, that an
// object it was shown stopped matching; before, the relabel was dropped,
// and so was the later delete (its last state no longer matched), and the
// watcher kept a ghost.
func TestWatchSelectorReportsAnObjectThatStopsMatching(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s := storetest.New(t)
	a := app("default", "web", "web:v1") // labels team=web
	if err := s.Create(ctx, a); err != nil {
		t.Fatal(err)
	}
	sel, err := v1.ParseSelector("team=web")
	if err != nil {
		t.Fatal(err)
	}
	ch := s.Watch(ctx, appKind, store.WatchOptions{Namespace: "default", Selector: sel, Revision: a.Metadata.Revision})
	if ev := <-ch; ev.Type != store.Added {
		t.Fatalf("first event %v, want ADDED", ev.Type)
	}
	a.Metadata.Labels = map[string]string{"team": "other"}
	if err := s.Update(ctx, a); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Delete(ctx, appKind, "default", "web", 0); err != nil {
		t.Fatal(err)
	}
	// A marker object that matches, to know the watch has caught up.
	if err := s.Create(ctx, app("default", "marker", "m:v1")); err != nil {
		t.Fatal(err)
	}
	for ev := range ch {
		if ev.Object != nil && ev.Object.GetMeta().Name == "marker" {
			t.Fatalf("watcher with selector team=web saw no event for web after it was relabelled and deleted: it still believes web exists")
		}
		if ev.Object != nil && ev.Object.GetMeta().Name == "web" {
			if ev.Type != store.Deleted {
				t.Fatalf("web stopped matching team=web: event %v; want DELETED", ev.Type)
			}
			return
		}
	}
}

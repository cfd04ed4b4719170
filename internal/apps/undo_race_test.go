package apps_test

import (
	"context"
	"errors"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/apps"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/store/storetest"
)

// `gantry rollout undo app/web` while web ran the bad revision 2: when
// the controller's automatic rollback (to revision 1's template) landed
// while the undo was being admitted, the undo's retry used to recompute
// "the previous revision" from the new state, found the bad revision 2
// and put it back. Now the undo is refused as a conflict.
func TestUndoThatFindsTheAppMovedIsAConflict(t *testing.T) {
	ctx := context.Background()
	s := storetest.New(t)
	deploy(t, s, "v1", 10)
	setStable(t, s, 1)
	deploy(t, s, "bad", 10)
	raced := false
	_, _, err := apps.Rollback(ctx, s, "default", "web", apps.RollbackOptions{
		Admit: func(a, prev *v1.App) error {
			if !raced {
				raced = true
				// The controller's automatic rollback commits meanwhile.
				if _, _, err := apps.Rollback(ctx, s, "default", "web", apps.RollbackOptions{
					To: 1, From: 2, Cause: "automatic rollback",
					Automatic: &v1.RollbackRecord{From: 2, To: 1, Time: time.Now().UTC(), Reason: "no progress"},
				}); err != nil {
					t.Fatal(err)
				}
			}
			return nil
		},
	})
	if !errors.Is(err, v1.ErrConflict) {
		t.Errorf("undo that found the App moved from revision 2 to 3: err %v, want a conflict", err)
	}
	a, err := store.Get[*v1.App](ctx, s, "default", "web")
	if err != nil {
		t.Fatal(err)
	}
	if a.Status.Revision != 3 || a.Spec.Image != "web:v1" {
		t.Errorf("after the race: revision %d runs %s; want revision 3 (the automatic rollback) running web:v1", a.Status.Revision, a.Spec.Image)
	}
}

// A retry after a mere status write (the App still on the revision the
// undo read) still undoes it.
func TestUndoRetriesAfterAStatusWrite(t *testing.T) {
	ctx := context.Background()
	s := storetest.New(t)
	deploy(t, s, "v1", 10)
	deploy(t, s, "v2", 10)
	wrote := false
	a, to, err := apps.Rollback(ctx, s, "default", "web", apps.RollbackOptions{
		Admit: func(a, prev *v1.App) error {
			if !wrote {
				wrote = true
				setStable(t, s, 1)
			}
			return nil
		},
	})
	if err != nil || to != 1 || a.Spec.Image != "web:v1" {
		t.Errorf("undo retried after a status write: to %d, err %v; want revision 1's web:v1", to, err)
	}
}

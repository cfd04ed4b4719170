package controller

import (
	"context"
	"errors"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/store"
)

// Instances were matched to their App by name only: an App deleted and
// created again while its old instances still ran (draining, or on a node
// that was down) adopted them, counted them ready and made none of its
// own. Those of another App (by the UID label) are retired and never
// counted; those made before the label are still adopted.
func TestRolloutAdoptsOnlyItsOwnInstances(t *testing.T) {
	tests := []struct {
		name string
		// uid is the subject instance's UID label: "own" for the App's,
		// "" for none.
		uid         string
		wantRetired bool
		wantReady   int32
	}{
		{"made for this App", "own", false, 2},
		{"made before the UID label", "", false, 2},
		{"made for a deleted App of the same name", "0123456789abcdef", true, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			s, r, a := runningV1(t, 2, &eventLog{})
			placeInstance(t, r, a, 1, true)
			subject := placeInstance(t, r, a, 1, true)
			if got := subject.Metadata.Labels[v1.LabelAppUID]; got != a.Metadata.UID {
				t.Fatalf("instance made with label %s=%q; want the App's UID %q", v1.LabelAppUID, got, a.Metadata.UID)
			}
			if tt.uid != "own" {
				out, err := store.Mutate(ctx, s, "default", subject.Metadata.Name, func(i *v1.Instance) error {
					if tt.uid == "" {
						delete(i.Metadata.Labels, v1.LabelAppUID)
					} else {
						i.Metadata.Labels[v1.LabelAppUID] = tt.uid
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				r.Instances.Observe(out)
			}
			if _, err := r.reconcile(ctx, "default/web"); err != nil {
				t.Fatal(err)
			}
			got, err := store.Get[*v1.Instance](ctx, s, "default", subject.Metadata.Name)
			if retired := errors.Is(err, v1.ErrNotFound) || err == nil && got.Metadata.Deleting != nil; retired != tt.wantRetired {
				t.Errorf("instance retired: %v (err %v), want %v", retired, err, tt.wantRetired)
			}
			app, err := store.Get[*v1.App](ctx, s, "default", "web")
			if err != nil {
				t.Fatal(err)
			}
			if app.Status.ReadyReplicas != tt.wantReady || app.Status.AvailableReplicas != tt.wantReady {
				t.Errorf("status: %d ready, %d available; want %d", app.Status.ReadyReplicas, app.Status.AvailableReplicas, tt.wantReady)
			}
			// Its 2 replicas, those it made with its UID: a foreign
			// instance is replaced.
			live := mustInstances(t, s, "web")
			if len(live) != 2 {
				t.Errorf("%d live instances; want 2", len(live))
			}
			for _, i := range live {
				if uid := i.Metadata.Labels[v1.LabelAppUID]; i.Metadata.Name != subject.Metadata.Name && uid != a.Metadata.UID {
					t.Errorf("instance %s made with %s=%q; want %q", i.Metadata.Name, v1.LabelAppUID, uid, a.Metadata.UID)
				}
			}
		})
	}
}

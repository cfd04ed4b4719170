package apiserver_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/store"
)

// While a rollout is paused, a scale-up grows the OLD side, with
// instances of the old template (guide: "the old side grows ... growing
// with instances of what the ready old ones run"). The quota counted the
// new template's requests only, so an App paused on a change to small
// requests could be scaled to many instances of its large old template.
// Each instance now counts at the larger of the template's requests and
// those of the App's instances.
func TestPausedScaleCountsTheRunningTemplate(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	govNamespace(t, ts, "q", &v1.Quota{CPU: 4000})
	c := ts.client(t, ts.Token)
	ctx := context.Background()
	apply := func(doc string) {
		t.Helper()
		o, err := v1.DecodeManifest([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Apply(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	apply("kind: App\nname: big\nnamespace: q\nimage: x:v1\nreplicas: 1\nresources: {cpu: 2}\n") // 2 of 4 CPUs
	// Its instance, as the rollout controller makes it.
	rev1, err := store.Get[*v1.Revision](ctx, ts.Store, "q", v1.RevisionName("big", 1))
	if err != nil {
		t.Fatal(err)
	}
	inst := &v1.Instance{TypeMeta: v1.TypeMeta{Kind: "Instance"}, Metadata: v1.ObjectMeta{Name: "big-a", Namespace: "q", Labels: map[string]string{v1.LabelApp: "big"}},
		Spec: v1.InstanceSpec{App: "big", Revision: 1, Template: rev1.Spec.Template}}
	if err := ts.Store.Create(ctx, inst); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Pause(ctx, "q", "big", true); err != nil {
		t.Fatal(err)
	}
	apply("kind: App\nname: big\nnamespace: q\nimage: x:v1\nreplicas: 1\nresources: {cpu: 100m}\n") // waits: paused
	// Every instance the controller adds now runs the 2-CPU template.
	if _, err := c.Scale(ctx, "q", "big", 20); !errors.Is(err, v1.ErrQuotaExceeded) {
		t.Errorf("scale of a paused App to 20 (its running template asks 2 CPUs each: 40 CPUs, quota 4): %v; want quota exceeded", err)
	}
	if _, err := c.Scale(ctx, "q", "big", 2); err != nil {
		t.Errorf("scale of the paused App to 2 (4 CPUs, quota 4): %v", err)
	}
}

// api.md: once a namespace is marked metadata.deleting, "writes into it
// are 409". scale and pause/resume did not look at the mark (apply,
// rollback and restart did, through admitApp).
func TestScaleAndPauseInADeletingNamespace(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	govNamespace(t, ts, "gone", nil)
	c := ts.client(t, ts.Token)
	ctx := context.Background()
	o, _ := v1.DecodeManifest([]byte("kind: App\nname: a\nnamespace: gone\nimage: x:v1\nreplicas: 1\n"))
	if _, err := c.Apply(ctx, o); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Mutate(ctx, ts.Store, "", "gone", func(n *v1.Namespace) error {
		now := time.Now().UTC()
		n.Metadata.Deleting = &now
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Scale(ctx, "gone", "a", 5); !errors.Is(err, v1.ErrConflict) {
		t.Errorf("scale in a namespace being deleted: %v; want 409", err)
	}
	if _, err := c.Pause(ctx, "gone", "a", true); !errors.Is(err, v1.ErrConflict) {
		t.Errorf("pause in a namespace being deleted: %v; want 409", err)
	}
}

// guide.md: "A quota lowered below what a namespace uses refuses only what
// would grow its use: an App can still be scaled down or made smaller."
// An App at its quota (4 x 2 CPU, quota 8) whose instances run the 2-CPU
// template is made smaller (1 CPU). A first version of counting instances
// at the larger of the running and the new requests counted the surge so
// too (5 x 2 = 10 > 8) and refused it; a rollout to smaller requests counts
// no surge of them.
func TestQuotaAllowsAShrinkingRollout(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	govNamespace(t, ts, "q", &v1.Quota{CPU: 8000})
	c := ts.client(t, ts.Token)
	ctx := context.Background()
	apply := func(doc string) error {
		t.Helper()
		o, err := v1.DecodeManifest([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Apply(ctx, o)
		return err
	}
	if err := apply("kind: App\nname: big\nnamespace: q\nimage: x:v1\nreplicas: 4\nresources: {cpu: 2}\n"); err != nil {
		t.Fatal(err)
	}
	rev1, err := store.Get[*v1.Revision](ctx, ts.Store, "q", v1.RevisionName("big", 1))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 4; i++ {
		inst := &v1.Instance{TypeMeta: v1.TypeMeta{Kind: "Instance"}, Metadata: v1.ObjectMeta{Name: fmt.Sprintf("big-%d", i), Namespace: "q", Labels: map[string]string{v1.LabelApp: "big"}},
			Spec: v1.InstanceSpec{App: "big", Revision: 1, Template: rev1.Spec.Template}}
		if err := ts.Store.Create(ctx, inst); err != nil {
			t.Fatal(err)
		}
	}
	if err := apply("kind: App\nname: big\nnamespace: q\nimage: x:v1\nreplicas: 4\nresources: {cpu: 1}\n"); err != nil {
		t.Errorf("making an App smaller (2 -> 1 CPU each) at its quota was refused: %v", err)
	}
}

package apiserver_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/client"
	"github.com/gantry-dev/gantry/internal/apps"
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
	applyDoc := manifestApplier(t, c)
	apply := func(doc string) {
		t.Helper()
		if err := applyDoc(doc); err != nil {
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
	apply := manifestApplier(t, c)
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

// An App paused before its rollout surged holds no surge instance yet, and
// resuming it takes no admission: the surge must count from the template
// change on. Counted only by the write that changed the template, it let
// another App, or a scale of the paused one, take the room, and the resume
// then ran 6 instances under a quota of 4 (review helper-159).
func TestAPausedRolloutKeepsItsSurgeCounted(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write func(ctx context.Context, c *client.Client, apply func(string) error) error
	}{
		{"another App", func(ctx context.Context, c *client.Client, apply func(string) error) error {
			return apply("kind: App\nname: b\nnamespace: q\nimage: x:v1\nreplicas: 2\n")
		}},
		{"a scale of the paused App", func(ctx context.Context, c *client.Client, apply func(string) error) error {
			_, err := c.Scale(ctx, "q", "a", 4)
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, t.TempDir(), "127.0.0.1:0")
			govNamespace(t, ts, "q", &v1.Quota{Instances: 4})
			c := ts.client(t, ts.Token)
			ctx := context.Background()
			apply := manifestApplier(t, c)
			if err := apply("kind: App\nname: a\nnamespace: q\nimage: x:v1\nreplicas: 2\nstrategy: {maxSurge: 2}\n"); err != nil {
				t.Fatal(err)
			}
			// Its two instances, as the rollout controller makes them.
			a, err := store.Get[*v1.App](ctx, ts.Store, "q", "a")
			if err != nil {
				t.Fatal(err)
			}
			rev1, err := store.Get[*v1.Revision](ctx, ts.Store, "q", v1.RevisionName("a", 1))
			if err != nil {
				t.Fatal(err)
			}
			for i := range 2 {
				inst := &v1.Instance{TypeMeta: v1.TypeMeta{Kind: "Instance"}, Metadata: v1.ObjectMeta{Name: fmt.Sprintf("a-%d", i), Namespace: "q",
					Labels: map[string]string{v1.LabelApp: "a", apps.LabelTemplateHash: apps.InstanceHash(a.Status.TemplateHash)}},
					Spec: v1.InstanceSpec{App: "a", Revision: 1, Template: rev1.Spec.Template}}
				if err := ts.Store.Create(ctx, inst); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := c.Pause(ctx, "q", "a", true); err != nil {
				t.Fatal(err)
			}
			// 2 replicas + a surge of 2: the quota's 4.
			if err := apply("kind: App\nname: a\nnamespace: q\nimage: x:v2\nreplicas: 2\nstrategy: {maxSurge: 2}\n"); err != nil {
				t.Fatalf("template change of the paused App (2 + surge 2 = quota 4): %v", err)
			}
			if err := tc.write(ctx, c, apply); !errors.Is(err, v1.ErrQuotaExceeded) {
				t.Errorf("with the paused rollout's surge of 2 still to come: %v; want quota exceeded", err)
			}
			// Scaling the paused App down still goes (1 + surge 2).
			if _, err := c.Scale(ctx, "q", "a", 1); err != nil {
				t.Errorf("scale of the paused App down to 1: %v", err)
			}
		})
	}
}

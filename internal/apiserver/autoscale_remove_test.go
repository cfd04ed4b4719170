package apiserver_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/client"
	"github.com/gantry-dev/gantry/internal/store"
)

// An apply that removes autoscale and gives no replicas kept the stored
// spec.replicas, the count from before autoscale, and the App dropped
// from its autoscaled count to it at once. It keeps the count it ran at,
// as removing a Kubernetes HPA leaves its Deployment's; replicas in the
// manifest win. A dry run (gantry diff) shows the same.
func TestApplyRemovingAutoscaleKeepsTheAutoscaledCount(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	c, warnings := warningClient(t, ts)
	ctx := context.Background()
	const scaled = "autoscale: {min: 1, max: 10, targetCPUPercent: 70}\n"
	tests := []struct {
		name       string
		before     string // manifest lines of the stored App
		decided    int32  // status.autoscaleReplicas of the stored App
		after      string // manifest lines applied
		want       int32  // spec.replicas after the apply; 0 for none
		wantRun    int32  // the App's DesiredReplicas after the apply
		wantNote   string // a warning that must be given, if any
		wantNoNote string // a warning that must not be
	}{
		{name: "removed", before: "replicas: 1\n" + scaled, decided: 6, after: "", want: 6, wantRun: 6,
			wantNote: "app/removed keeps 6 replicas, its count under autoscale"},
		{name: "removed-no-replicas-before", before: scaled, decided: 4, after: "", want: 4, wantRun: 4,
			wantNote: "app/removed-no-replicas-before keeps 4 replicas"},
		{name: "removed-replicas-given", before: "replicas: 1\n" + scaled, decided: 6, after: "replicas: 2\n", want: 2, wantRun: 2,
			wantNoNote: "its count under autoscale"},
		// Before the autoscaler's first decision the App runs at
		// spec.replicas within min and max.
		{name: "removed-undecided", before: "autoscale: {min: 3, max: 10, targetCPUPercent: 70}\n", after: "", want: 3, wantRun: 3},
		{name: "kept", before: "replicas: 1\n" + scaled, decided: 6, after: scaled, want: 1, wantRun: 6,
			wantNoNote: "its count under autoscale"},
		{name: "never-autoscaled", before: "replicas: 1\n", after: "", want: 1, wantRun: 1},
		{name: "never-autoscaled-no-replicas", before: "", after: "", want: 0, wantRun: 1},
	}
	manifest := func(name, extra string) *v1.App {
		o, err := v1.DecodeManifest([]byte(fmt.Sprintf("kind: App\nname: %s\nimage: web:v1\nports: [{port: 8080}]\n%s", name, extra)))
		if err != nil {
			t.Fatal(err)
		}
		return o.(*v1.App)
	}
	replicas := func(a *v1.App) int32 {
		if a.Spec.Replicas == nil {
			return 0
		}
		return *a.Spec.Replicas
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := c.Apply(ctx, manifest(tt.name, tt.before)); err != nil {
				t.Fatal(err)
			}
			if tt.decided != 0 {
				if _, err := store.Mutate(ctx, ts.Store, "default", tt.name, func(a *v1.App) error {
					a.Status.AutoscaleReplicas, a.Status.AutoscaleReason = tt.decided, "cpu above target"
					return nil
				}); err != nil {
					t.Fatal(err)
				}
			}
			stored, err := client.Get[*v1.App](ctx, c, "default", tt.name)
			if err != nil {
				t.Fatal(err)
			}
			dry := manifest(tt.name, tt.after)
			if _, err := c.ApplyDryRun(ctx, dry); err != nil {
				t.Fatal(err)
			}
			if got := replicas(dry); got != tt.want {
				t.Errorf("dry run: replicas %d, want %d", got, tt.want)
			}
			if got, _ := client.Get[*v1.App](ctx, c, "default", tt.name); replicas(got) != replicas(stored) || got.Metadata.Revision != stored.Metadata.Revision {
				t.Fatalf("the dry run changed the App: replicas %d, revision %d -> %d", replicas(got), stored.Metadata.Revision, got.Metadata.Revision)
			}
			*warnings = nil
			if _, err := c.Apply(ctx, manifest(tt.name, tt.after)); err != nil {
				t.Fatal(err)
			}
			a, err := client.Get[*v1.App](ctx, c, "default", tt.name)
			if err != nil {
				t.Fatal(err)
			}
			if got := replicas(a); got != tt.want {
				t.Errorf("replicas %d, want %d", got, tt.want)
			}
			if got := a.DesiredReplicas(); got != tt.wantRun {
				t.Errorf("desired replicas %d, want %d (status.autoscaleReplicas %d)", got, tt.wantRun, a.Status.AutoscaleReplicas)
			}
			w := strings.Join(*warnings, "\n")
			if tt.wantNote != "" && !strings.Contains(w, tt.wantNote) {
				t.Errorf("warnings %q; want one with %q", *warnings, tt.wantNote)
			}
			if tt.wantNoNote != "" && strings.Contains(w, tt.wantNoNote) {
				t.Errorf("warnings %q; want none with %q", *warnings, tt.wantNoNote)
			}
		})
	}
}

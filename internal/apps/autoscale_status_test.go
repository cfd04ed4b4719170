package apps_test

import (
	"context"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/apps"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/store/storetest"
)

// The autoscaler's status fields outlived a removed autoscale: `get app`
// showed its last decision, and an autoscale set again later started
// from that old count instead of the replicas the user gave meanwhile.
func TestSaveClearsTheAutoscalerStatusWithAutoscale(t *testing.T) {
	const autoscaled = "kind: App\nname: web\nimage: web:v1\nreplicas: 2\nautoscale: {min: 1, max: 10, targetCPUPercent: 50}\n"
	const fixed = "kind: App\nname: web\nimage: web:v1\nreplicas: 2\n"
	tests := []struct {
		name string
		// first is stored and given the autoscaler's status; then is
		// each of applies in turn.
		first   string
		applies []string
		// want is the stored App's count, wantStatus whether the
		// autoscaler's status is still there.
		want       int32
		wantStatus bool
	}{
		{"kept with autoscale", autoscaled, []string{autoscaled + "labels: {tier: web}\n"}, 8, true},
		{"cleared without autoscale", autoscaled, []string{fixed}, 2, false},
		{"cleared without autoscale, with a new template", autoscaled, []string{"kind: App\nname: web\nimage: web:v2\nreplicas: 2\n"}, 2, false},
		{"autoscale set again starts from replicas", autoscaled, []string{fixed, autoscaled}, 2, false},
		{"left by an earlier version, cleared by the next apply", fixed, []string{fixed}, 2, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			s := storetest.New(t)
			save(t, s, tt.first)
			if _, err := store.Mutate(ctx, s, "default", "web", func(a *v1.App) error {
				a.Status.AutoscaleReplicas, a.Status.AutoscaleReason = 8, "cpu at 200% of requests, target 50%"
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			for _, doc := range tt.applies {
				save(t, s, doc)
			}
			a, err := store.Get[*v1.App](ctx, s, "default", "web")
			if err != nil {
				t.Fatal(err)
			}
			if got := a.DesiredReplicas(); got != tt.want {
				t.Errorf("%d replicas, want %d", got, tt.want)
			}
			if has := a.Status.AutoscaleReplicas != 0 || a.Status.AutoscaleReason != ""; has != tt.wantStatus {
				t.Errorf("status autoscaleReplicas %d, autoscaleReason %q; want them kept: %v", a.Status.AutoscaleReplicas, a.Status.AutoscaleReason, tt.wantStatus)
			}
		})
	}
}

// save applies doc as the API server does.
func save(t *testing.T, s *store.Store, doc string) {
	t.Helper()
	ctx := context.Background()
	o, err := v1.DecodeManifest([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	a := o.(*v1.App)
	prev, err := store.Get[*v1.App](ctx, s, a.Metadata.Namespace, a.Metadata.Name)
	if err != nil {
		prev = nil
	}
	if _, err := apps.Save(ctx, s, apps.Change{App: a, Prev: prev, Image: a.Spec.Image}); err != nil {
		t.Fatal(err)
	}
}

package apiserver_test

import (
	"context"
	"net/http"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/store"
)

// The quota check of an App write once counted an autoscaled App at
// status.autoscaleReplicas as the request body gave it; the store then
// kept the server's status (none on a create), so the App ran far more
// instances than the quota admitted. The check now uses the status that
// will be stored.
func TestQuotaIgnoresClientStatusOnCreate(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	govNamespace(t, ts, "q", &v1.Quota{Instances: 4})
	body := `{"kind":"App","metadata":{"name":"big","namespace":"q"},
	  "spec":{"image":"x:v1","replicas":10,"autoscale":{"min":1,"max":10,"targetCPUPercent":60}},
	  "status":{"autoscaleReplicas":1}}`
	code, out := raw(t, ts, http.MethodPost, "/api/v1/namespaces/q/apps", "application/json", []byte(body))
	if code == http.StatusForbidden {
		return
	}
	a, err := store.Get[*v1.App](context.Background(), ts.Store, "q", "big")
	if err != nil {
		t.Fatalf("create answered %d %s, and no App stored: %v", code, out, err)
	}
	t.Errorf("create answered %d; stored App wants %d instances in a namespace whose quota is 4 instances", code, a.DesiredReplicas())
}

func TestQuotaIgnoresClientStatusOnUpdate(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	govNamespace(t, ts, "q", &v1.Quota{Memory: 4 << 30})
	ctx := context.Background()
	// 8 instances of 256Mi: 2Gi of a 4Gi quota.
	body := `{"kind":"App","metadata":{"name":"big","namespace":"q"},
	  "spec":{"image":"x:v1","replicas":8,"resources":{"memory":"256Mi"},"autoscale":{"min":1,"max":8,"targetCPUPercent":60}}}`
	if code, out := raw(t, ts, http.MethodPost, "/api/v1/namespaces/q/apps", "application/json", []byte(body)); code != http.StatusCreated {
		t.Fatalf("create: %d %s", code, out)
	}
	// Each instance grows to 1Gi, while the body claims 1 replica.
	body = `{"kind":"App","metadata":{"name":"big","namespace":"q"},
	  "spec":{"image":"x:v1","replicas":8,"resources":{"memory":"1Gi"},"autoscale":{"min":1,"max":8,"targetCPUPercent":60}},
	  "status":{"autoscaleReplicas":1}}`
	code, out := raw(t, ts, http.MethodPut, "/api/v1/namespaces/q/apps/big?apply=true", "application/json", []byte(body))
	if code == http.StatusForbidden {
		return
	}
	a, _ := store.Get[*v1.App](ctx, ts.Store, "q", "big")
	t.Errorf("apply answered %d %.200s; stored App: %d replicas of %s against a 4Gi memory quota", code, out, a.DesiredReplicas(), a.Spec.Resources.Memory)
}

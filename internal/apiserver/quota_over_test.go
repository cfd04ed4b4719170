package apiserver_test

import (
	"context"
	"errors"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/store"
)

// A namespace whose quota was lowered below what it uses still lets its
// users scale down or shrink an App (as Kubernetes admits a request that
// lowers use); what grows is refused until the namespace is under.
func TestAChangeThatLowersUseIsAdmittedOverQuota(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	govNamespace(t, ts, "q", &v1.Quota{Instances: 4})
	c := ts.client(t, ts.Token)
	ctx := context.Background()
	for _, doc := range []string{"kind: App\nname: a\nnamespace: q\nimage: x:v1\nreplicas: 2\n", "kind: App\nname: b\nnamespace: q\nimage: x:v1\nreplicas: 2\n"} {
		o, _ := v1.DecodeManifest([]byte(doc))
		if _, err := c.Apply(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := store.Mutate(ctx, ts.Store, "", "q", func(n *v1.Namespace) error { n.Spec.Quota.Instances = 2; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Scale(ctx, "q", "b", 1); err != nil {
		t.Errorf("scale b from 2 to 1 (use 4 -> 3, quota now 2): %v; want it admitted, as it lowers the use", err)
	}
	if _, err := c.Scale(ctx, "q", "b", 2); !errors.Is(err, v1.ErrQuotaExceeded) {
		t.Errorf("scale b back to 2 (use 3 -> 4, quota 2): %v; want it refused", err)
	}
}

package apiserver_test

import (
	"context"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/store"
)

// Deleting a bound instance through the API marks it for deletion with
// its App's drain delay, which its agent waits before SIGTERM; an
// instance whose App is gone drains for as long as it was created with.
func TestDeletingAnInstanceDrainsItLikeARollout(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	ctx := context.Background()
	code, body := raw(t, ts, "POST", "/api/v1/namespaces/default/apps", "application/yaml",
		[]byte("kind: App\nmetadata: {name: web}\nspec: {image: web:v1, strategy: {drainDelay: 30s}}\n"))
	if code != 201 {
		t.Fatalf("create app: %d %s", code, body)
	}
	for _, tc := range []struct {
		name, app string
		created   v1.Duration // the instance's spec.drainDelay when created
		want      v1.Duration
	}{
		{"web-abcde", "web", v1.Duration(9 * time.Second), v1.Duration(30 * time.Second)},
		{"gone-abcde", "gone", v1.Duration(9 * time.Second), v1.Duration(9 * time.Second)},
	} {
		i := &v1.Instance{TypeMeta: v1.TypeMeta{Kind: "Instance"}, Metadata: v1.ObjectMeta{Name: tc.name, Namespace: "default"},
			Spec:   v1.InstanceSpec{App: tc.app, Revision: 1, Node: "n1", DrainDelay: tc.created},
			Status: v1.InstanceStatus{Phase: v1.PhaseRunning, IP: "10.0.0.2", Ready: true}}
		if err := ts.Store.Create(ctx, i); err != nil {
			t.Fatal(err)
		}
		code, body = raw(t, ts, "DELETE", "/api/v1/namespaces/default/instances/"+tc.name, "", nil)
		if code >= 300 {
			t.Fatalf("delete instance %s: %d %s", tc.name, code, body)
		}
		got, err := store.Get[*v1.Instance](ctx, ts.Store, "default", tc.name)
		if err != nil {
			t.Fatalf("instance %s gone at once (no drain at all): %v", tc.name, err)
		}
		if got.Metadata.Deleting == nil {
			t.Fatalf("instance %s not marked for deletion", tc.name)
		}
		if got.Spec.DrainDelay != tc.want {
			t.Errorf("%s marked for deletion with spec.drainDelay %s, want %s", tc.name, got.Spec.DrainDelay.D(), tc.want.D())
		}
	}
}

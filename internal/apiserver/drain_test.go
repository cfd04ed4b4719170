package apiserver_test

import (
	"context"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/store"
)

// Deleting a bound instance through the API marks it for deletion with
// its App's drain delay, which its agent waits before SIGTERM.
func TestDeletingAnInstanceDrainsItLikeARollout(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	ctx := context.Background()
	code, body := raw(t, ts, "POST", "/api/v1/namespaces/default/apps", "application/yaml",
		[]byte("kind: App\nmetadata: {name: web}\nspec: {image: web:v1, strategy: {drainDelay: 30s}}\n"))
	if code != 201 {
		t.Fatalf("create app: %d %s", code, body)
	}
	i := &v1.Instance{TypeMeta: v1.TypeMeta{Kind: "Instance"}, Metadata: v1.ObjectMeta{Name: "web-abcde", Namespace: "default"},
		Spec: v1.InstanceSpec{App: "web", Revision: 1, Node: "n1"}, Status: v1.InstanceStatus{Phase: v1.PhaseRunning, IP: "10.0.0.2", Ready: true}}
	if err := ts.Store.Create(ctx, i); err != nil {
		t.Fatal(err)
	}
	code, body = raw(t, ts, "DELETE", "/api/v1/namespaces/default/instances/web-abcde", "", nil)
	if code >= 300 {
		t.Fatalf("delete instance: %d %s", code, body)
	}
	got, err := store.Get[*v1.Instance](ctx, ts.Store, "default", "web-abcde")
	if err != nil {
		t.Fatalf("instance gone at once (no drain at all): %v", err)
	}
	if got.Metadata.Deleting == nil {
		t.Fatal("instance not marked for deletion")
	}
	if want := v1.Duration(30 * time.Second); got.Spec.DrainDelay != want {
		t.Fatalf("marked for deletion with spec.drainDelay %s, want the app's %s", got.Spec.DrainDelay, want)
	}
}

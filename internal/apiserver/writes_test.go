package apiserver_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// An apply of a Secret that changes only its annotations stores them:
// before, it answered "unchanged" and dropped them, while the dry run
// (and so gantry diff) showed the change.
func TestSecretApplyStoresAnnotationChanges(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	ctx := context.Background()
	c := ts.client(t, ts.Token)
	one, _ := v1.DecodeManifest([]byte("kind: Secret\nname: db\nstringData: {p: x}\n"))
	if _, err := c.Apply(ctx, one); err != nil {
		t.Fatal(err)
	}
	two, _ := v1.DecodeManifest([]byte("kind: Secret\nname: db\nannotations: {owner: team-a}\nstringData: {p: x}\n"))
	res, err := c.Apply(ctx, two)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Get(ctx, "Secret", "default", "db")
	if err != nil {
		t.Fatal(err)
	}
	if got.GetMeta().Annotations["owner"] != "team-a" {
		t.Errorf("apply said %q but the stored secret has annotations %v; want owner: team-a", res, got.GetMeta().Annotations)
	}
}

// DELETE …/instances/NAME?revision=N is refused with 409 when the
// instance moved on, also for an instance bound to a node (which is
// marked for a graceful delete rather than deleted at once).
func TestInstanceDeleteHonoursRevision(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	ctx := context.Background()
	inst := &v1.Instance{TypeMeta: v1.TypeMeta{Kind: "Instance"}, Metadata: v1.ObjectMeta{Name: "web-1", Namespace: "default",
		Labels: map[string]string{v1.LabelApp: "web"}}, Spec: v1.InstanceSpec{App: "web", Revision: 1, Node: "n1"}}
	if err := ts.Store.Create(ctx, inst); err != nil {
		t.Fatal(err)
	}
	c := ts.client(t, ts.Token)
	stale := strconv.FormatInt(inst.Metadata.Revision-1, 10)
	_, err := c.Do(ctx, http.MethodDelete, "/api/v1/namespaces/default/instances/web-1", url.Values{"revision": {stale}}, nil, nil)
	if !errors.Is(err, v1.ErrConflict) {
		t.Errorf("delete at a stale revision: %v; want 409", err)
	}
	got, err := c.Get(ctx, "Instance", "default", "web-1")
	if err != nil || got.GetMeta().Deleting != nil {
		t.Fatalf("after the refused delete: %v, deleting %v; want it untouched", err, got.GetMeta().Deleting)
	}
	cur := strconv.FormatInt(inst.Metadata.Revision, 10)
	if _, err := c.Do(ctx, http.MethodDelete, "/api/v1/namespaces/default/instances/web-1", url.Values{"revision": {cur}}, nil, nil); err != nil {
		t.Errorf("delete at the current revision: %v", err)
	}
}

// A Secret apply that swaps one empty-valued label for another is a
// change: comparing values alone took {a: ""} and {b: ""} for the same.
func TestSecretApplyStoresALabelSwap(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	ctx := context.Background()
	c := ts.client(t, ts.Token)
	one, _ := v1.DecodeManifest([]byte("kind: Secret\nname: db\nlabels: {a: \"\"}\nstringData: {p: x}\n"))
	if _, err := c.Apply(ctx, one); err != nil {
		t.Fatal(err)
	}
	two, _ := v1.DecodeManifest([]byte("kind: Secret\nname: db\nlabels: {b: \"\"}\nstringData: {p: x}\n"))
	if _, err := c.Apply(ctx, two); err != nil {
		t.Fatal(err)
	}
	got, err := c.Get(ctx, "Secret", "default", "db")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := got.GetMeta().Labels["b"]; !ok {
		t.Errorf("stored labels %v; want b", got.GetMeta().Labels)
	}
}

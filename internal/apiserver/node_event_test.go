package apiserver_test

import (
	"context"
	"errors"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/store"
)

// A node credential could once create any Event in any namespace, about
// any object, with any source: node n1, which runs nothing in namespace
// default, reported a rollback of App web there as the controller would
// (notify turns RolledBack events into deploy notifications to that
// namespace's notifiers). A node reports events about its own instances
// only, under its own name.
func TestNodeEventsAreAboutItsOwnInstances(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	ctx := context.Background()
	_, nodeTok, err := auth.CreateToken(ctx, ts.Store, v1.TokenSpec{Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	ev := &v1.Event{TypeMeta: v1.TypeMeta{Kind: "Event"}, Metadata: v1.ObjectMeta{Name: "forged", Namespace: "default"},
		Type: v1.EventWarning, Reason: "RolledBack", Message: "rolled back: pull image evil.example/web",
		Object: v1.ObjectRef{Kind: "App", Name: "web"}, Source: "controller", Time: time.Now()}
	nc := ts.client(t, nodeTok)
	if err := nc.Create(ctx, ev); !errors.Is(err, v1.ErrForbidden) {
		t.Errorf("node n1 reporting a RolledBack event of App default/web with source %q: %v; want forbidden", ev.Source, err)
	}
	for node, name := range map[string]string{"n1": "web-mine", "n2": "web-theirs"} {
		inst := &v1.Instance{TypeMeta: v1.TypeMeta{Kind: "Instance"}, Metadata: v1.ObjectMeta{Name: name, Namespace: "default",
			Labels: map[string]string{v1.LabelApp: "web"}}, Spec: v1.InstanceSpec{App: "web", Revision: 1, Node: node}}
		if err := ts.Store.Create(ctx, inst); err != nil {
			t.Fatal(err)
		}
	}
	about := func(inst string) *v1.Event {
		return &v1.Event{TypeMeta: v1.TypeMeta{Kind: "Event"}, Metadata: v1.ObjectMeta{Name: inst + ".x", Namespace: "default",
			Labels: map[string]string{v1.LabelApp: "other"}}, Type: v1.EventWarning, Reason: "BackOff",
			Object: v1.ObjectRef{Kind: "Instance", Name: inst}, Source: "controller", Time: time.Now()}
	}
	if err := nc.Create(ctx, about("web-theirs")); !errors.Is(err, v1.ErrForbidden) {
		t.Errorf("node n1 reporting an event of n2's instance: %v; want forbidden", err)
	}
	if err := nc.Create(ctx, about("web-gone")); !errors.Is(err, v1.ErrForbidden) {
		t.Errorf("node n1 reporting an event of an instance that does not exist: %v; want forbidden", err)
	}
	if err := nc.Create(ctx, about("web-mine")); err != nil {
		t.Fatalf("node n1 reporting an event of its own instance: %v", err)
	}
	got, err := store.Get[*v1.Event](ctx, ts.Store, "default", "web-mine.x")
	if err != nil {
		t.Fatal(err)
	}
	if got.Source != "agent/n1" || got.Metadata.Labels[v1.LabelApp] != "web" {
		t.Errorf("stored event: source %q, app label %q; want agent/n1 and web (the server's word, not the node's)", got.Source, got.Metadata.Labels[v1.LabelApp])
	}
}

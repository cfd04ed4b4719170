package server

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/apps"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/store/storetest"
)

// The load balancer's node ports end up in the status of their Apps, and
// leave it when they close.
func TestNodePortStatus(t *testing.T) {
	ctx := context.Background()
	st := storetest.New(t)
	for _, name := range []string{"web", "quiet"} {
		a := &v1.App{TypeMeta: v1.TypeMeta{Kind: "App"}, Metadata: v1.ObjectMeta{Name: name, Namespace: "default"}}
		a.Spec.Image = name
		v1.SetDefaults(a)
		if _, err := apps.Save(ctx, st, apps.Change{App: a, Image: name}); err != nil {
			t.Fatal(err)
		}
	}
	list := func() []*v1.App {
		all, _, err := store.List[*v1.App](ctx, st, store.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return all
	}
	status := func(name string) []v1.NodePortStatus {
		a, err := store.Get[*v1.App](ctx, st, "default", name)
		if err != nil {
			t.Fatal(err)
		}
		return a.Status.NodePorts
	}
	n := newNodePortStatus(st, list, slog.New(slog.NewTextHandler(io.Discard, nil)))

	n.set(map[string]int{"default/web/tcp": 30001, "default/web/admin": 30007, "default/gone/tcp": 30002})
	n.sync(ctx)
	if got, want := status("web"), []v1.NodePortStatus{{Port: "admin", NodePort: 30007}, {Port: "tcp", NodePort: 30001}}; !slices.Equal(got, want) {
		t.Errorf("web's node ports = %v, want %v", got, want)
	}
	if got := status("quiet"); len(got) != 0 {
		t.Errorf("an App with no exposed port has node ports %v", got)
	}
	before, _ := store.Get[*v1.App](ctx, st, "default", "web")
	n.sync(ctx)
	if after, _ := store.Get[*v1.App](ctx, st, "default", "web"); after.Metadata.Revision != before.Metadata.Revision {
		t.Errorf("a sync with nothing new wrote the App again")
	}
	n.set(map[string]int{})
	n.sync(ctx)
	if got := status("web"); len(got) != 0 {
		t.Errorf("after its ports closed web still has %v", got)
	}
}

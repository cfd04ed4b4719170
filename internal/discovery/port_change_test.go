package discovery_test

import (
	"context"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/discovery"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/store/storetest"
)

// A rollout may move a port (8080 -> 9090). While it runs, the ready
// instances are the old ones, which listen on 8080: the snapshot must
// carry their own port, so that the load balancer and DNS SRV send
// traffic to 8080 for them (and 9090 for the new ones), rather than
// refuse every connection until new instances are ready.
func TestOldInstancesKeepTheirPortDuringAPortChange(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := storetest.New(t)
	createWeb(ctx, t, s, v1.Port{Name: "http", Port: 8080, Protocol: "http"})
	old := &v1.Instance{TypeMeta: v1.TypeMeta{Kind: "Instance"}, Metadata: v1.ObjectMeta{Name: "web-old", Namespace: "default"},
		Spec:   v1.InstanceSpec{App: "web", Node: "n1", Revision: 1},
		Status: v1.InstanceStatus{IP: "10.0.0.2", Ready: true}}
	old.Spec.Template.Ports = []v1.Port{{Name: "http", Port: 8080, Protocol: "http"}}
	if err := s.Create(ctx, old); err != nil {
		t.Fatal(err)
	}
	// Revision 2 moves the port; its instance is not ready yet.
	if _, err := store.Mutate(ctx, s, "default", "web", func(a *v1.App) error {
		a.Spec.Ports = []v1.Port{{Name: "http", Port: 9090, Protocol: "http"}}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	w := startWatcher(ctx, s)
	var svc *discovery.Service
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if svc = w.Current().Service("default", "web"); svc != nil && len(svc.Ports) == 1 && svc.Ports[0].Port == 9090 {
			break
		}
	}
	if svc == nil || len(svc.Ready) != 1 {
		t.Fatalf("service: %+v; want web-old ready under the App's port 9090", svc)
	}
	if got := svc.Ready[0].PortFor(svc.Ports[0]); got != 8080 {
		t.Fatalf("web-old (listening on 8080 per its template) is offered on port %d", got)
	}
}

// A rollout may rename a port and renumber it at once (http:8080 ->
// web:9090). The old instances have no port named web: they once got
// the new number from the App (9090, where they listen on nothing); now
// they are left out of that port's endpoints, and the new instances
// serve it once ready.
func TestOldInstancesLackARenamedPort(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := storetest.New(t)
	createWeb(ctx, t, s, v1.Port{Name: "http", Port: 8080, Protocol: "http"})
	old := &v1.Instance{TypeMeta: v1.TypeMeta{Kind: "Instance"}, Metadata: v1.ObjectMeta{Name: "web-old", Namespace: "default"},
		Spec:   v1.InstanceSpec{App: "web", Node: "n1", Revision: 1},
		Status: v1.InstanceStatus{IP: "10.0.0.2", Ready: true}}
	old.Spec.Template.Ports = []v1.Port{{Name: "http", Port: 8080, Protocol: "http"}}
	if err := s.Create(ctx, old); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Mutate(ctx, s, "default", "web", func(a *v1.App) error {
		a.Spec.Ports = []v1.Port{{Name: "web", Port: 9090, Protocol: "http"}}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	w := startWatcher(ctx, s)
	var svc *discovery.Service
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if svc = w.Current().Service("default", "web"); svc != nil && len(svc.Ports) == 1 && svc.Ports[0].Name == "web" {
			break
		}
	}
	if svc == nil || len(svc.Ready) != 1 {
		t.Fatalf("service: %+v; want web-old ready", svc)
	}
	if got := svc.Ready[0].PortFor(svc.Ports[0]); got != 0 {
		t.Fatalf("web-old (no port named web in its template) is offered on port %d for it; want none (0)", got)
	}
}

// The most common port change: an App with one port (defaulted to the name
// "http") gets a second one, so its first port is now unnamed (or the user
// names it differently). The old instances still listen on 8080 for it and
// are offered there, matched by number; a first version of the rename fix
// offered them on port 0 and so dropped them from the load balancer and SRV
// records until a new instance was ready.
func TestOldInstancesKeepAPortWhoseNameChangedButNotItsNumber(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := storetest.New(t)
	createWeb(ctx, t, s, v1.Port{Name: "http", Port: 8080, Protocol: "http"})
	old := &v1.Instance{TypeMeta: v1.TypeMeta{Kind: "Instance"}, Metadata: v1.ObjectMeta{Name: "web-old", Namespace: "default"},
		Spec:   v1.InstanceSpec{App: "web", Node: "n1", Revision: 1},
		Status: v1.InstanceStatus{IP: "10.0.0.2", Ready: true}}
	old.Spec.Template.Ports = []v1.Port{{Name: "http", Port: 8080, Protocol: "http"}}
	if err := s.Create(ctx, old); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Mutate(ctx, s, "default", "web", func(a *v1.App) error {
		a.Spec.Ports = []v1.Port{{Port: 8080, Protocol: "http"}, {Name: "metrics", Port: 9100, Protocol: "http"}}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	w := startWatcher(ctx, s)
	var svc *discovery.Service
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if svc = w.Current().Service("default", "web"); svc != nil && len(svc.Ports) == 2 {
			break
		}
	}
	if svc == nil || len(svc.Ready) != 1 {
		t.Fatalf("service: %+v; want web-old ready", svc)
	}
	if got := svc.Ready[0].PortFor(svc.Ports[0]); got != 8080 {
		t.Fatalf("web-old (listening on 8080, the App's first port's number) is offered on port %d for it; want 8080", got)
	}
}

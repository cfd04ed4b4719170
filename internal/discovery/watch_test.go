package discovery_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/discovery"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/store/storetest"
)

// webPort is the http port of the test app.
var webPort = v1.Port{Name: "http", Port: 8080, Protocol: "http"}

// createWeb stores App default/web with the given ports, and the ready
// node n1 that the tests bind its instances to (an instance on a node
// that does not exist gets no traffic).
func createWeb(ctx context.Context, t *testing.T, s *store.Store, ports ...v1.Port) *v1.App {
	t.Helper()
	n1 := &v1.Node{TypeMeta: v1.TypeMeta{Kind: "Node"}, Metadata: v1.ObjectMeta{Name: "n1"}, Status: v1.NodeStatus{Ready: true}}
	if err := s.Create(ctx, n1); err != nil {
		t.Fatal(err)
	}
	app := &v1.App{TypeMeta: v1.TypeMeta{Kind: "App"}, Metadata: v1.ObjectMeta{Name: "web", Namespace: "default"}}
	app.Spec.Image = "web:v1"
	app.Spec.Ports = ports
	if err := s.Create(ctx, app); err != nil {
		t.Fatal(err)
	}
	return app
}

// startWatcher runs a Watcher on s until ctx ends.
func startWatcher(ctx context.Context, s *store.Store) *discovery.Watcher {
	w := discovery.NewWatcher(s, nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	go w.Run(ctx)
	return w
}

func TestWatcherPublishesOnlyServingInstances(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := storetest.New(t)
	createWeb(ctx, t, s, webPort)
	inst := func(name, ip string, ready bool) *v1.Instance {
		i := &v1.Instance{TypeMeta: v1.TypeMeta{Kind: "Instance"}, Metadata: v1.ObjectMeta{Name: name, Namespace: "default"},
			Spec: v1.InstanceSpec{App: "web", Node: "n1"}, Status: v1.InstanceStatus{IP: ip, Ready: ready}}
		if err := s.Create(ctx, i); err != nil {
			t.Fatal(err)
		}
		return i
	}
	inst("web-a", "10.0.0.2", true)
	inst("web-b", "10.0.0.3", false)
	w := startWatcher(ctx, s)
	sub := w.Subscribe(ctx)
	waitFor := func(what string, ok func(*discovery.Snapshot) bool) time.Duration {
		t.Helper()
		start := time.Now()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case snap := <-sub:
				if ok(snap) {
					return time.Since(start)
				}
			case <-timeout:
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	readyIPs := func(snap *discovery.Snapshot) []string {
		svc := snap.Service("default", "web")
		if svc == nil {
			return nil
		}
		var ips []string
		for _, e := range svc.Ready {
			ips = append(ips, e.IP)
		}
		return ips
	}
	waitFor("web-a alone ready", func(s *discovery.Snapshot) bool {
		ips := readyIPs(s)
		return len(ips) == 1 && ips[0] == "10.0.0.2" && len(s.Service("default", "web").All) == 2
	})
	// A readiness change reaches subscribers in milliseconds.
	b, _ := store.Get[*v1.Instance](ctx, s, "default", "web-b")
	b.Status.Ready = true
	if err := s.Update(ctx, b); err != nil {
		t.Fatal(err)
	}
	d := waitFor("web-b ready", func(s *discovery.Snapshot) bool { return len(readyIPs(s)) == 2 })
	t.Logf("readiness change propagated in %s", d)
	// An instance marked for deletion leaves at once, before it stops.
	now := time.Now()
	store.Mutate(ctx, s, "default", "web-a", func(i *v1.Instance) error { i.Metadata.Deleting = &now; return nil })
	waitFor("web-a draining", func(s *discovery.Snapshot) bool {
		ips := readyIPs(s)
		return len(ips) == 1 && ips[0] == "10.0.0.3"
	})
	// It is still listed as draining, for DNS to know whose address it is.
	if d := w.Current().Service("default", "web").Draining; len(d) != 1 || d[0].Instance != "web-a" {
		t.Fatalf("draining = %+v, want web-a", d)
	}
	if _, err := s.Delete(ctx, store.KindFor[*v1.App](), "default", "web", 0); err != nil {
		t.Fatal(err)
	}
	waitFor("web gone", func(s *discovery.Snapshot) bool { return s.Service("default", "web") == nil })
}

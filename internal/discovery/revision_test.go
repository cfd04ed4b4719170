package discovery_test

import (
	"context"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/discovery"
	"github.com/gantry-dev/gantry/internal/store/storetest"
)

// Snapshot.Revision feeds the DNS SOA serial: the Watcher's snapshots
// carry the store revision they reflect, and follow the App's updates.
func TestWatcherSnapshotsCarryTheStoreRevision(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := storetest.New(t)
	app := createWeb(ctx, t, s)
	w := startWatcher(ctx, s)
	sub := w.Subscribe(ctx)
	timeout := time.After(10 * time.Second)
	// next waits for a snapshot in which web satisfies ok.
	next := func(what string, ok func(*discovery.Service) bool) *discovery.Snapshot {
		t.Helper()
		for {
			select {
			case snap := <-sub:
				if svc := snap.Service("default", "web"); svc != nil && ok(svc) {
					return snap
				}
			case <-timeout:
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	first := next("web", func(*discovery.Service) bool { return true })
	if first.Revision < app.Metadata.Revision {
		t.Fatalf("snapshot with web has revision %d, before web's own %d", first.Revision, app.Metadata.Revision)
	}
	app.Spec.Ports = []v1.Port{{Name: "http", Port: 8080, Protocol: v1.ProtocolHTTP}}
	if err := s.Update(ctx, app); err != nil {
		t.Fatal(err)
	}
	second := next("web's port", func(svc *discovery.Service) bool { return len(svc.Ports) == 1 })
	if second.Revision <= first.Revision || second.Revision < app.Metadata.Revision {
		t.Fatalf("after an update: snapshot revision %d (before %d, the update's %d)", second.Revision, first.Revision, app.Metadata.Revision)
	}
	// The App's load balancing reaches the load balancer the same way,
	// and a change of it alone is published.
	app.Spec.LoadBalancing = v1.BalanceLeastRequests
	if err := s.Update(ctx, app); err != nil {
		t.Fatal(err)
	}
	next("web's load balancing", func(svc *discovery.Service) bool { return svc.Balancing == v1.BalanceLeastRequests })
}

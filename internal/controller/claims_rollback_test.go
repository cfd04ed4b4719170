package controller

import (
	"context"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/store/storetest"
)

// The automatic rollback checks the node ports the old template brings
// back and writes the App under the API server's claims lock. It used to
// take only the quota lock, so an apply of another App claiming the same
// node port between the rollback's check and its write was admitted too,
// and two Apps held one node port.
func TestAutomaticRollbackHoldsTheClaimsLock(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := storetest.New(t)
	for _, name := range []string{"q", "r"} {
		if err := s.Create(ctx, &v1.Namespace{TypeMeta: v1.TypeMeta{Kind: "Namespace"}, Metadata: v1.ObjectMeta{Name: name}}); err != nil {
			t.Fatal(err)
		}
	}
	api, apply := serveAPI(ctx, t, s)
	// Revision 1 has node port 30432; revision 2, the failing one, gave
	// it up.
	if err := apply("kind: App\nname: a\nnamespace: q\nimage: x:v1\nports: [{name: pg, port: 5432, protocol: tcp, expose: tcp, nodePort: 30432}]\n"); err != nil {
		t.Fatal(err)
	}
	if err := apply("kind: App\nname: a\nnamespace: q\nimage: x:v2\nports: [{name: pg, port: 5432, protocol: tcp}]\n"); err != nil {
		t.Fatal(err)
	}
	a, err := store.Get[*v1.App](ctx, s, "q", "a")
	if err != nil {
		t.Fatal(err)
	}
	a.Status.StableRevision = 1

	r := NewRollout(s, &eventLog{}, quiet, nil, nil)
	r.HoldQuota = api.HoldQuota
	r.HoldClaims = api.HoldClaims
	applied := make(chan error, 1)
	r.Admit = func(ctx context.Context, a, prev *v1.App) error {
		err := api.AdmitRollback(ctx, a, prev)
		if err == nil {
			// Another App claims the node port while the rollback is
			// between its check and its write: under the claims lock
			// it waits, and is then refused.
			go func() {
				applied <- apply("kind: App\nname: b\nnamespace: r\nimage: y:v1\nports: [{name: pg, port: 5432, protocol: tcp, expose: tcp, nodePort: 30432}]\n")
			}()
			select {
			case err := <-applied:
				applied <- err
			case <-time.After(2 * time.Second):
			}
		}
		return err
	}
	if err := r.deadlineExceeded(ctx, a, nil, time.Minute, ""); err != nil {
		t.Fatal(err)
	}
	<-applied
	all, _, err := store.List[*v1.App](ctx, s, store.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var holders []string
	for _, x := range all {
		for _, p := range x.Spec.Ports {
			if p.NodePort == 30432 {
				holders = append(holders, x.Metadata.Key())
			}
		}
	}
	if len(holders) != 1 {
		t.Errorf("node port 30432 is claimed by %v, want exactly one App: the automatic rollback and an apply interleaved", holders)
	}
}

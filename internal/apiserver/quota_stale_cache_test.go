package apiserver

import (
	"context"
	"errors"
	"log/slog"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/informer"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/store/storetest"
)

// Admission read the namespace through the cache, so a quota set a moment
// ago (the watch not delivered yet) was neither held nor checked: an App
// past it went in. The quota's namespace is read from the store.
func TestAQuotaJustSetIsEnforced(t *testing.T) {
	e := storetest.EmbeddedIn(t, t.TempDir())
	st := store.New(e.Client, "")
	ctx := context.Background()
	ns := &v1.Namespace{TypeMeta: v1.TypeMeta{Kind: "Namespace"}, Metadata: v1.ObjectMeta{Name: "q"}}
	if err := st.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	// A cache that has the namespace without its quota, and stays so.
	log := slog.New(slog.DiscardHandler)
	cache := informer.New[*v1.Namespace](st, log)
	cctx, stop := context.WithCancel(ctx)
	go cache.Run(cctx)
	<-cache.Synced()
	stop()
	s := New(Config{}, st, allowAll{}, allowAll{}, log, WithNamespaceCache(cache))

	if _, err := store.Mutate(ctx, st, "", "q", func(n *v1.Namespace) error {
		n.Spec.Quota = &v1.Quota{Instances: 1}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	a := &v1.App{TypeMeta: v1.TypeMeta{Kind: "App"}, Metadata: v1.ObjectMeta{Name: "web", Namespace: "q"}}
	a.Spec.Image = "registry.example/web:v1@sha256:" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	three := int32(3)
	a.Spec.Replicas = &three
	v1.SetDefaults(a)
	if _, err := s.saveApp(ctx, a, nil, false); !errors.Is(err, v1.ErrQuotaExceeded) {
		t.Fatalf("an App of 3 instances in a namespace whose quota of 1 the cache has not seen: %v; want refused", err)
	}
}

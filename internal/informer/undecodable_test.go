package informer

import (
	"context"
	"log/slog"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/store/storetest"
)

// One stored value this code cannot decode (written by hand into etcd, or
// by a version whose fields differ) ended the store's watch, and every
// list after it failed on the same value: the kind's informer retried for
// ever while its cache stayed as it was, and no object of the kind written
// since reached any controller. The value is left out, with an error in
// the log, and the others go on.
func TestAnUndecodableObjectDoesNotStopItsKind(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s := storetest.New(t)
	inf := New[*v1.Secret](s, slog.New(slog.DiscardHandler))
	go inf.Run(ctx)
	<-inf.Synced()
	if _, err := s.Client().Put(ctx, store.DefaultPrefix+"secrets/default/odd", `{"metadata":{"name":"odd","namespace":"default","labels":"x"}}`); err != nil {
		t.Fatal(err)
	}
	fine := &v1.Secret{TypeMeta: v1.TypeMeta{Kind: "Secret"}, Metadata: v1.ObjectMeta{Namespace: "default", Name: "fine"}}
	if err := s.Create(ctx, fine); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, ok := inf.Get("default", "fine"); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("secret default/fine, written after an undecodable one, never reached the cache (informer at revision %d)", inf.Revision())
		}
	}
	l, _, err := store.List[*v1.Secret](ctx, s, store.ListOptions{})
	if err != nil || len(l) != 1 || l[0].Metadata.Name != "fine" {
		t.Errorf("a list beside an undecodable secret: %d objects, %v; want the readable one", len(l), err)
	}
	if _, err := store.Get[*v1.Secret](ctx, s, "default", "odd"); err == nil {
		t.Error("a Get of the undecodable secret succeeded; want the reason it cannot be read")
	}
}

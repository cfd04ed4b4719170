package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/store/storetest"
)

// A stored value this code cannot decode (written into etcd by hand, or
// by a version whose fields differ) fails the lists and watches of its
// kind: left out, it would look deleted to every controller, which would
// retire what it owns. The error names its key, so an operator can mend
// it; it did not.
func TestAnUndecodableValueIsNamed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s := storetest.New(t)
	key := store.DefaultPrefix + "secrets/default/odd"
	ch := s.Watch(ctx, store.KindFor[*v1.Secret](), store.WatchOptions{})
	if _, err := s.Client().Put(ctx, key, `{"metadata":{"name":"odd","namespace":"default","labels":"x"}}`); err != nil {
		t.Fatal(err)
	}
	if _, _, err := store.List[*v1.Secret](ctx, s, store.ListOptions{}); err == nil || !strings.Contains(err.Error(), key) {
		t.Errorf("list beside an undecodable secret: %v; want an error naming %s", err, key)
	}
	for ev := range ch {
		if ev.Type == store.Error {
			if !strings.Contains(ev.Err.Error(), key) {
				t.Errorf("the watch ended with %v; want it to name %s", ev.Err, key)
			}
			return
		}
	}
	t.Error("the watch ended without an error")
}

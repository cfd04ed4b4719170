// Package storetest starts real embedded etcd instances for tests. There
// is no in-memory stand-in: tests run against the same store code and the
// same etcd that production uses.
package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/store"
)

// Embedded starts an etcd in a temporary directory, stopped when the test
// ends.
func Embedded(t testing.TB) *store.Embedded {
	t.Helper()
	return EmbeddedIn(t, t.TempDir())
}

// EmbeddedIn starts an etcd with its data in dir, so that a test can stop
// it and start another on the same data.
func EmbeddedIn(t testing.TB, dir string) *store.Embedded {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e, err := store.StartEmbedded(ctx, store.EmbedConfig{Dir: dir})
	if err != nil {
		t.Fatalf("start embedded etcd: %v", err)
	}
	t.Cleanup(e.Close)
	return e
}

// New returns a Store on a fresh embedded etcd.
func New(t testing.TB) *store.Store {
	t.Helper()
	return store.New(Embedded(t).Client, "")
}

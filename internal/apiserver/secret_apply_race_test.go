package apiserver_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/store"
)

// An apply of a Secret that loses its compare-and-swap (another write of
// the same secret in between: a second apply, a key rotation pass) is
// tried again with the same request. The write once cleared the request's
// values on the first attempt, so the retry sealed an empty map and stored
// the secret with no values at all. Concurrent applies that all found no
// secret also failed with "already exists" instead of updating.
func TestConcurrentSecretAppliesKeepValues(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	c := ts.client(t, ts.Token)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := ts.Store.Watch(ctx, store.KindFor[*v1.Secret](), store.WatchOptions{Namespace: "default"})
	emptied := make(chan int64, 1000)
	go func() {
		for ev := range events {
			if sec, ok := ev.Object.(*v1.Secret); ok && ev.Type != store.Deleted && (sec.Sealed == nil || len(sec.Sealed.Keys) == 0) {
				emptied <- ev.Revision
			}
		}
	}()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 40 {
				sec := &v1.Secret{TypeMeta: v1.TypeMeta{Kind: "Secret"}, Metadata: v1.ObjectMeta{Name: "db", Namespace: "default"},
					StringData: map[string]string{"password": fmt.Sprintf("g%d-%d", g, i)}}
				if _, err := c.Apply(ctx, sec); err != nil && !errors.Is(err, v1.ErrConflict) {
					t.Errorf("apply: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	var out map[string]string
	if err := c.Sub(ctx, "GET", "Secret", "default", "db", "reveal", nil, &out); err != nil {
		t.Fatal(err)
	}
	select {
	case rev := <-emptied:
		t.Errorf("an apply stored secret db with no values (revision %d); now it holds %d keys", rev, len(out))
	default:
	}
	if len(out) != 1 || out["password"] == "" {
		t.Errorf("secret db after the applies: %d keys; want password", len(out))
	}
}

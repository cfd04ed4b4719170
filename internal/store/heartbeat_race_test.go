package store_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/store/storetest"
)

// Two Beats for one holder at once (a register and a heartbeat, or a
// retried request) must leave its key in place: each granting a lease,
// the loser revoked the lease the key ended up attached to, and every
// later Beat only kept alive a lease that held no key, so the node
// looked dead for good.
func TestConcurrentBeatsKeepTheHeartbeatKey(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s := storetest.New(t)
	hb := s.Heartbeats("nodes", 30*time.Second)
	for i := 0; i < 200; i++ {
		name := fmt.Sprintf("n%d", i)
		var wg sync.WaitGroup
		for j := 0; j < 2; j++ {
			wg.Add(1)
			go func() { defer wg.Done(); hb.Beat(ctx, name) }()
		}
		wg.Wait()
		time.Sleep(20 * time.Millisecond) // let the asynchronous Revoke land
		if err := hb.Beat(ctx, name); err != nil {
			t.Fatal(err)
		}
		alive, _, err := hb.Alive(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !alive[name] {
			t.Fatalf("after two concurrent Beats and one more, %s has no heartbeat key (iteration %d)", name, i)
		}
	}
}

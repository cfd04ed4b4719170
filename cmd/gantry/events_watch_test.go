package main

import (
	"context"
	"strings"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/store"
)

// An event that expires while `gantry events -w` runs is not printed a
// second time: the watch's DELETED for it is an expiry, not news.
func TestEventsWatchDoesNotReprintExpiredEvents(t *testing.T) {
	rs := startRolloutServer(t)
	ctx := context.Background()
	go func() {
		time.Sleep(time.Second)
		e := &v1.Event{TypeMeta: v1.TypeMeta{Kind: "Event"}, Metadata: v1.ObjectMeta{Name: "hello.1", Namespace: "default"},
			Type: v1.EventNormal, Reason: "Started", Message: "started once", Object: v1.ObjectRef{Kind: "App", Name: "hello"}, Time: time.Now()}
		if err := rs.st.Create(ctx, e); err != nil {
			t.Error(err)
			return
		}
		time.Sleep(300 * time.Millisecond)
		if _, err := rs.st.Delete(ctx, store.KindFor[*v1.Event](), "default", "hello.1", 0); err != nil {
			t.Error(err)
		}
	}()
	out, _, _ := rs.run(t, 3*time.Second, "events", "-w")
	if n := strings.Count(out, "started once"); n != 1 {
		t.Fatalf("the event was printed %d times; want once:\n%s", n, out)
	}
}

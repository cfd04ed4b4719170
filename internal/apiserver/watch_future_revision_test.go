package apiserver_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/client"
)

// A watch from a revision the store has not reached yet (a client's
// position from before the store was restored, or a typo) was answered
// 200 with a BOOKMARK at that future revision, and the changes made until
// the store got there were never sent (revision=MaxInt64 overflowed too).
// It is refused with 410 ResyncRequired, which makes clients list again.
func TestWatchFromAFutureRevisionIsResyncRequired(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	const apps = "/api/v1/namespaces/default/apps"
	for _, rev := range []string{"1000000", "9223372036854775807"} {
		code, body := raw(t, ts, "GET", apps+"?watch=true&revision="+rev, "", nil)
		if code != 410 || !strings.Contains(body, "ResyncRequired") {
			t.Errorf("watch from revision %s: %d %s; want 410 ResyncRequired", rev, code, trunc(body))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c := ts.client(t, ts.Token)
	ev := <-c.Watch(ctx, "App", "default", client.WatchOptions{After: 1000000})
	if ev.Type != "ERROR" || !errors.Is(ev.Err, v1.ErrResyncRequired) {
		t.Errorf("client watch from revision 1000000: first event %+v; want an ERROR that is ErrResyncRequired", ev)
	}
	// A watch from the store's current revision is still served.
	_, rev, err := c.List(ctx, "App", "default", client.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ch := c.Watch(ctx, "App", "default", client.WatchOptions{After: rev})
	if code, body := raw(t, ts, "POST", apps, "application/json", []byte(`{"kind":"App","metadata":{"name":"w"},"spec":{"image":"h:1"}}`)); code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	for ev := range ch {
		if ev.Type == "BOOKMARK" {
			continue
		}
		if ev.Type != "ADDED" || ev.Object.GetMeta().Name != "w" {
			t.Errorf("watch from the current revision %d: %s %v; want ADDED app w", rev, ev.Type, ev.Err)
		}
		return
	}
	t.Fatalf("watch from the current revision %d ended without an event", rev)
}

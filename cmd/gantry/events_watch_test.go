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

// `gantry events -w` printed the events there at the start in the
// watch's order (by object name), each row formatted on its own; they
// print as one table in time order now, as `gantry events` prints them
// (review helper-160).
func TestEventsWatchStartsWithTheEventsInTimeOrder(t *testing.T) {
	rs := startRolloutServer(t)
	ctx := context.Background()
	now := time.Now()
	for _, e := range []struct {
		name, msg string
		age       time.Duration
	}{
		{"aaa.1", "third", time.Minute},
		{"mmm.1", "first", 3 * time.Minute},
		{"zzz.1", "second", 2 * time.Minute},
	} {
		ev := &v1.Event{TypeMeta: v1.TypeMeta{Kind: "Event"}, Metadata: v1.ObjectMeta{Name: e.name, Namespace: "default"},
			Type: v1.EventNormal, Reason: "Test", Message: e.msg, Object: v1.ObjectRef{Kind: "App", Name: "hello"}, Time: now.Add(-e.age)}
		if err := rs.st.Create(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	out, _, _ := rs.run(t, 2*time.Second, "events", "-w")
	a, b, c := strings.Index(out, "first"), strings.Index(out, "second"), strings.Index(out, "third")
	if a < 0 || b < a || c < b {
		t.Errorf("events -w printed them out of time order:\n%s", out)
	}
	// One table: every row's message starts in the same column.
	col := -1
	for _, line := range strings.Split(out, "\n") {
		for _, m := range []string{"first", "second", "third"} {
			if i := strings.Index(line, m); i >= 0 {
				if col >= 0 && i != col {
					t.Errorf("rows not aligned:\n%s", out)
				}
				col = i
			}
		}
	}
}

package scheduler

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/store/storetest"
)

// A node that becomes able to take a pending instance while that
// instance's "Unschedulable" status write is in flight must not be
// forgotten. The retry pass skips instances with a write in flight; before,
// nothing tried them again when the write ended, and the instance stayed
// Pending with a stale message until some unrelated event.
//
// The loop is driven by hand in the order the session can see things: the
// node event, then the watch event of the status write, then its result.
func TestRetryAskedWhileStatusWriteInFlightIsKept(t *testing.T) {
	st := storetest.New(t)
	create(t, st, newInstance("x", "web", 100, 128*mi))
	x, err := store.Get[*v1.Instance](t.Context(), st, "default", "x")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	l := &loop{
		s: &Scheduler{Store: st}, ctx: ctx, log: slog.New(slog.DiscardHandler), m: NewMetrics(nil),
		snap:    NewSnapshot(nil, nil),
		pending: map[string]*entry{}, assumed: map[string]assumption{}, busy: map[string]bool{},
		results: make(chan result), sem: make(chan struct{}, DefaultMaxInflight),
	}
	defer l.drain()

	// No node yet: x is marked Unschedulable; the write is in flight.
	l.onPending(x)
	if !l.busy["default/x"] {
		t.Fatal("expected an unschedulable status write in flight")
	}
	// A ready node arrives meanwhile; the session asks for a retry pass.
	if err := l.onNode(store.Event{Type: store.Added, Object: newNode("n1", 4000, 8*gi)}); err != nil {
		t.Fatal(err)
	}
	if l.retry {
		l.retryPending()
	}
	// The watch shows the committed status write before its result.
	marked := waitInstance(t, st, "x", isUnschedulable)
	if err := l.onInstance(store.Event{Type: store.Modified, Object: marked}); err != nil {
		t.Fatal(err)
	}
	l.onResult(<-l.results)
	if l.retry {
		l.retryPending()
	}
	if _, still := l.pending["default/x"]; still && l.inflight == 0 && !l.retry && l.timerC == nil {
		t.Fatalf("x fits on ready node n1 but nothing will try it again: status stays %q", marked.Status.Message)
	}
}

// The real loop: 200 instances arrive while the only node is NotReady,
// and it turns Ready while their Unschedulable writes are in flight.
// Every one is placed. Before the fix about half of the runs left 9-50 of
// them Pending for good (TestRetryAskedWhileStatusWriteInFlightIsKept
// shows the same deterministically).
func TestLoopNodeReadyDuringStatusWrites(t *testing.T) {
	st := storetest.New(t)
	s := &Scheduler{Store: st, Log: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	n := newNode("n1", 640000, 640*gi)
	n.Status.Ready = false
	create(t, st, n)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 25 {
				if err := st.Create(t.Context(), newInstance(fmt.Sprintf("i%d-%d", g, i), "web", 100, 128*mi)); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	time.Sleep(30 * time.Millisecond)
	if _, err := store.Mutate(t.Context(), st, "", "n1", func(n *v1.Node) error { n.Status.Ready = true; return nil }); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	stuck, total := 0, 0
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		list, _, err := store.List[*v1.Instance](t.Context(), st, store.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		stuck, total = 0, len(list)
		for _, i := range list {
			if i.Spec.Node == "" {
				stuck++
			}
		}
		if stuck == 0 {
			return
		}
	}
	t.Fatalf("%d of %d instances still pending 15s after node n1 became ready", stuck, total)
}

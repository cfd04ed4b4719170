package store_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/store/storetest"
)

// Ending a watch's context ends its goroutine, even when nobody reads.
func TestWatchGoroutinesEndWithContext(t *testing.T) {
	s := storetest.New(t)
	ctx := context.Background()
	// Warm up the client's watch stream.
	wctx, c := context.WithCancel(ctx)
	s.Watch(wctx, appKind, store.WatchOptions{})
	c()
	time.Sleep(200 * time.Millisecond)
	before := runtime.NumGoroutine()
	for i := 0; i < 50; i++ {
		wctx, cancel := context.WithCancel(ctx)
		ch := s.Watch(wctx, appKind, store.WatchOptions{})
		if err := s.Create(ctx, app("default", fmt.Sprint("g", i), "x")); err != nil {
			t.Fatal(err)
		}
		_ = ch // never read
		cancel()
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before+5 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before+5 {
		t.Errorf("goroutines: %d before, %d after 50 cancelled watches", before, n)
	}
}

// A transaction with more writes than etcd takes is a caller error, not
// an unavailable store (503, "retry"), as it was.
func TestTxnWithTooManyOpsIsInvalid(t *testing.T) {
	s := storetest.New(t)
	ctx := context.Background()
	tx := s.Txn()
	for i := 0; i <= store.MaxTxnOps; i++ {
		tx.Create(app("default", fmt.Sprint("t", i), "x"))
	}
	err := tx.Commit(ctx)
	if !errors.Is(err, v1.ErrInvalid) {
		t.Errorf("commit of %d creates: %v; want ErrInvalid", store.MaxTxnOps+1, err)
	}
}

// The events of one transaction come one after another with its revision,
// all but the last marked More: a watcher that reports the revision it has
// caught up with (the informer) waits for the last.
func TestWatchMarksTheEventsOfOneTransaction(t *testing.T) {
	s := storetest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rev, _ := s.Revision(ctx)
	a, b := app("default", "a", "x"), app("default", "b", "x")
	if err := s.Txn().Create(a).Create(b).Commit(ctx); err != nil {
		t.Fatal(err)
	}
	ch := s.Watch(ctx, appKind, store.WatchOptions{Revision: rev + 1})
	var got []store.Event
	for len(got) < 2 {
		select {
		case e := <-ch:
			got = append(got, e)
		case <-ctx.Done():
			t.Fatal("timeout")
		}
	}
	if got[0].Revision != got[1].Revision || got[0].Type != store.Added || got[1].Type != store.Added {
		t.Errorf("got %+v", got)
	}
	if !got[0].More || got[1].More {
		t.Errorf("More: %v, %v; want true, false", got[0].More, got[1].More)
	}
}

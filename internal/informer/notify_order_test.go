package informer

import (
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/store"
)

// A relist (after a 410 or a lost leader) swapped in its map, released
// the lock and then read that map to notify handlers, while a controller's
// Observe wrote it: a data race, and without -race Go's fatal "concurrent
// map iteration and map write", which took the whole server down. Run
// with -race.
func TestRelistWhileObserving(t *testing.T) {
	inf := New[*v1.Secret](nil, slog.New(slog.DiscardHandler))
	inf.OnChange(func(_, _ *v1.Secret, _ bool) {})
	list := make([]v1.Object, 0, 2000)
	for i := range 2000 {
		list = append(list, &v1.Secret{TypeMeta: v1.TypeMeta{Kind: "Secret"}, Metadata: v1.ObjectMeta{Namespace: "default", Name: fmt.Sprint("s", i), Revision: 5}})
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for n := int64(100); ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			inf.Observe(&v1.Secret{TypeMeta: v1.TypeMeta{Kind: "Secret"}, Metadata: v1.ObjectMeta{Namespace: "default", Name: fmt.Sprint("new", n), Revision: n}})
			inf.Forget("default", fmt.Sprint("new", n-1))
		}
	}()
	for range 30 {
		inf.replace(list, 10)
	}
	close(stop)
	wg.Wait()
}

// Observe (on a controller's worker) and the watch's apply each notified
// after unlocking, so a handler could run for both at once and hear
// revision 6 before 5, ending with the older version as its last word.
// Notifications follow the cache's order now, one at a time.
func TestHandlersHearChangesOneAtATimeInOrder(t *testing.T) {
	inf := New[*v1.Secret](nil, slog.New(slog.DiscardHandler))
	inf.Observe(secretAt(4))
	var running atomic.Int32
	var mu sync.Mutex
	var order []int64
	inObserve := make(chan struct{})
	release := make(chan struct{})
	inf.OnChange(func(_, cur *v1.Secret, _ bool) {
		if running.Add(1) > 1 {
			t.Errorf("a handler ran while another call of it was running (revision %d)", cur.Metadata.Revision)
		}
		defer running.Add(-1)
		if cur.Metadata.Revision == 5 {
			close(inObserve)
			<-release
		}
		mu.Lock()
		order = append(order, cur.Metadata.Revision)
		mu.Unlock()
	})
	observed := make(chan struct{})
	go func() { defer close(observed); inf.Observe(secretAt(5)) }()
	<-inObserve
	applied := make(chan struct{})
	go func() {
		defer close(applied)
		inf.apply(store.Event{Type: store.Modified, Object: secretAt(6), Revision: 6}, true)
	}()
	time.Sleep(100 * time.Millisecond) // apply waits for Observe's handlers
	close(release)
	<-observed
	<-applied
	mu.Lock()
	defer mu.Unlock()
	if len(order) != 2 || order[0] != 5 || order[1] != 6 {
		t.Errorf("handlers heard revisions %v, want [5 6] as the cache took them", order)
	}
	if cached, _ := inf.Get("default", "db"); cached.Metadata.Revision != 6 {
		t.Errorf("the cache holds revision %d, want 6", cached.Metadata.Revision)
	}
}

// A relist moved Revision after it released the cache: an Observe in
// between, of an object the list no longer has (deleted after the write
// it records), was judged against the old revision and cached, and no
// watch event would ever remove it. The revision moves with the cache.
func TestARelistMovesTheRevisionWithTheCache(t *testing.T) {
	inf := New[*v1.Secret](nil, slog.New(slog.DiscardHandler))
	inf.replace(nil, 10) // db was written at 5 and deleted before 10
	if got := inf.Revision(); got != 10 {
		t.Fatalf("after a list at revision 10, Revision() = %d", got)
	}
	inf.Observe(secretAt(5))
	if _, ok := inf.Get("default", "db"); ok {
		t.Error("an Observe of a write older than the list cached an object the list no longer has")
	}
}

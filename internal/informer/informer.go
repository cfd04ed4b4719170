// Package informer keeps in-memory copies of the store's objects of one
// kind, fed by a list and then a watch, and tells handlers about every
// change. Controllers, the discovery source and others read from informers
// instead of etcd on their hot paths.
package informer

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/store"
)

// Informer keeps an in-memory copy of every object of one kind, fed by a
// list and then a watch of the store, and tells a handler about each
// change. If the watch falls behind etcd's compaction it lists again.
type Informer[T v1.Object] struct {
	store *store.Store
	log   *slog.Logger

	mu      sync.RWMutex
	objs    map[string]T // by namespace/name
	synced  chan struct{}
	once    sync.Once
	started atomic.Bool
	rev     atomic.Int64 // the newest store revision seen

	hmu     sync.RWMutex
	handler []func(old, cur T, deleted bool)
	// nmu orders notifications as the cache changes: it is held from a
	// change of the cache (a watch event's, a list's, an Observe) to the
	// end of its handlers, so handlers run one call at a time and hear
	// the versions of an object in the order the cache took them.
	nmu sync.Mutex
}

// NewInformer returns an informer of kind T.
func New[T v1.Object](s *store.Store, log *slog.Logger) *Informer[T] {
	return &Informer[T]{store: s, log: log, objs: map[string]T{}, synced: make(chan struct{})}
}

// OnChange registers a handler. old is the zero value for additions;
// deleted marks removals (cur is then the last state). A handler
// registered after Run started hears only of later changes: it should
// List what exists. Handlers are called one at a time, in the order the
// cache changed; a handler must not call Observe on the same informer.
func (inf *Informer[T]) OnChange(fn func(old, cur T, deleted bool)) {
	inf.hmu.Lock()
	inf.handler = append(inf.handler, fn)
	inf.hmu.Unlock()
}

// Revision is the newest store revision the cache has caught up with (a
// list's, then each change's or progress note's); it only grows.
func (inf *Informer[T]) Revision() int64 { return inf.rev.Load() }

func (inf *Informer[T]) seen(rev int64) {
	for {
		cur := inf.rev.Load()
		if rev <= cur || inf.rev.CompareAndSwap(cur, rev) {
			return
		}
	}
}

// Synced is closed after the first full list.
func (inf *Informer[T]) Synced() <-chan struct{} { return inf.synced }

// Get returns an object by namespace and name.
func (inf *Informer[T]) Get(ns, name string) (T, bool) {
	key := name
	if ns != "" {
		key = ns + "/" + name
	}
	inf.mu.RLock()
	defer inf.mu.RUnlock()
	o, ok := inf.objs[key]
	return o, ok
}

// List returns every object for which keep returns true (all when nil).
func (inf *Informer[T]) List(keep func(T) bool) []T {
	inf.mu.RLock()
	defer inf.mu.RUnlock()
	out := make([]T, 0, len(inf.objs))
	for _, o := range inf.objs {
		if keep == nil || keep(o) {
			out = append(out, o)
		}
	}
	return out
}

// Run lists and watches until ctx ends. An informer shared by several
// components runs once: later calls just wait for ctx.
func (inf *Informer[T]) Run(ctx context.Context) {
	if !inf.started.CompareAndSwap(false, true) {
		<-ctx.Done()
		return
	}
	k := store.KindFor[T]()
	for ctx.Err() == nil {
		objs, rev, err := inf.store.List(ctx, k, store.ListOptions{})
		if err != nil {
			inf.log.Warn("list for informer", "kind", k.Plural, "err", err)
			Sleep(ctx, time.Second)
			continue
		}
		inf.replace(objs, rev)
		inf.once.Do(func() { close(inf.synced) })
		next := rev + 1
		for ev := range inf.store.Watch(ctx, k, store.WatchOptions{Revision: next, ProgressNotify: true}) {
			if ev.Type == store.Error {
				if !errors.Is(ev.Err, v1.ErrResyncRequired) {
					inf.log.Warn("watch for informer", "kind", k.Plural, "err", ev.Err)
				}
				break
			}
			if ev.Type == store.Bookmark {
				inf.seen(ev.Revision)
				continue
			}
			// Caught up with a revision once all it wrote is cached.
			inf.apply(ev, !ev.More)
		}
		Sleep(ctx, 100*time.Millisecond)
	}
}

// replace swaps in a list the store gave at revision rev. What the cache
// holds at a later revision was recorded with Observe after the list was
// read (the controller's own write): it stays, as apply would keep it,
// until the watch from rev on brings it or what came after it.
func (inf *Informer[T]) replace(objs []v1.Object, rev int64) {
	fresh := make(map[string]T, len(objs))
	for _, o := range objs {
		fresh[o.GetMeta().Key()] = o.(T)
	}
	inf.nmu.Lock()
	defer inf.nmu.Unlock()
	inf.mu.Lock()
	old := inf.objs
	for key, o := range old {
		if o.GetMeta().Revision > rev {
			fresh[key] = o
		}
	}
	inf.objs = fresh
	// The revision moves with the cache, under the lock: a reader of
	// Revision finds the cache at least that new, and an Observe of an
	// object the list no longer has is judged against the list's
	// revision (cached, a deleted one would stay).
	inf.seen(rev)
	// The changes are read under the lock: once it is released, fresh
	// is the cache, which Observe and Forget write.
	type change struct {
		old, cur T
		deleted  bool
	}
	var changes []change
	for key, o := range fresh {
		prev, had := old[key]
		if !had || prev.GetMeta().Revision != o.GetMeta().Revision {
			changes = append(changes, change{prev, o, false})
		}
	}
	for key, o := range old {
		if _, still := fresh[key]; !still {
			changes = append(changes, change{o, o, true})
		}
	}
	inf.mu.Unlock()
	for _, c := range changes {
		inf.notify(c.old, c.cur, c.deleted)
	}
}

// apply puts a watch event into the cache; with caughtUp, the cache has
// then all that the event's revision wrote, and Revision moves to it
// (under the lock, as in replace).
func (inf *Informer[T]) apply(ev store.Event, caughtUp bool) {
	o := ev.Object.(T)
	key := o.GetMeta().Key()
	inf.nmu.Lock()
	defer inf.nmu.Unlock()
	inf.mu.Lock()
	prev, had := inf.objs[key]
	// ev.Revision is the revision of the change; for a DELETED that is
	// the delete's, above every revision the removed object was written
	// at, so a real delete always passes. A cached object at or above it
	// was written after the change (for a DELETED: made again under the
	// same name) and recorded with Observe: the watch is catching up.
	skip := had && prev.GetMeta().Revision >= ev.Revision
	switch {
	case skip:
	case ev.Type == store.Deleted:
		delete(inf.objs, key)
	default:
		inf.objs[key] = o
	}
	if caughtUp {
		inf.seen(ev.Revision)
	}
	inf.mu.Unlock()
	if !skip {
		inf.notify(prev, o, ev.Type == store.Deleted)
	}
}

func (inf *Informer[T]) notify(old, cur T, deleted bool) {
	inf.hmu.RLock()
	handlers := inf.handler
	inf.hmu.RUnlock()
	for _, h := range handlers {
		h(old, cur, deleted)
	}
}

// Observe records that obj was written with a newer revision, so that
// reads through the informer see the controller's own writes before the
// watch delivers them. Handlers hear of it at once, as of a watch event;
// the watch event itself is then skipped.
func (inf *Informer[T]) Observe(o T) {
	key := o.GetMeta().Key()
	inf.nmu.Lock()
	defer inf.nmu.Unlock()
	inf.mu.Lock()
	prev, had := inf.objs[key]
	if had && prev.GetMeta().Revision >= o.GetMeta().Revision {
		inf.mu.Unlock()
		return
	}
	// Not cached, and the watch is past this write: it has seen the
	// object deleted after it. Cached again, nothing would ever remove it.
	if !had && o.GetMeta().Revision <= inf.rev.Load() {
		inf.mu.Unlock()
		return
	}
	inf.objs[key] = o
	inf.mu.Unlock()
	inf.notify(prev, o, false)
}

// Forget removes an object the controller itself deleted.
func (inf *Informer[T]) Forget(ns, name string) {
	key := name
	if ns != "" {
		key = ns + "/" + name
	}
	inf.mu.Lock()
	delete(inf.objs, key)
	inf.mu.Unlock()
}

// Sleep waits for d or the end of ctx.
func Sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// EqualJSON reports whether a and b marshal to the same JSON.
func EqualJSON(a, b any) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(x) == string(y)
}

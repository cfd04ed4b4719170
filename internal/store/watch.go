package store

import (
	"context"
	"fmt"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

var rpcCompacted = rpctypes.ErrCompacted

// EventType says what happened to an object.
type EventType string

// Watch event types. A Bookmark carries no object: it tells the watcher
// that everything up to Revision has been delivered, so a later resume can
// start after it. An Error ends the watch.
const (
	Added    EventType = "ADDED"
	Modified EventType = "MODIFIED"
	Deleted  EventType = "DELETED"
	Bookmark EventType = "BOOKMARK"
	Error    EventType = "ERROR"
)

// Event is one change seen by a watch.
type Event struct {
	Type EventType
	// Object is the object after the change; for Deleted, as it was last,
	// but with the delete's revision in its metadata.
	Object v1.Object
	// Revision is the store revision of the change. Resume a watch from
	// Revision+1 to see what came after. One transaction makes several
	// events with the same revision; they come one after another, before
	// any event of a later revision.
	Revision int64
	// More is set when the next event has the same revision: one
	// transaction wrote both. A watcher that reports the revision it has
	// caught up with waits for the last of them.
	More bool
	// Err is set on Error events; errors.Is(Err, v1.ErrResyncRequired)
	// means the revision asked for was compacted away: list again.
	Err error
}

// WatchOptions narrow a Watch.
type WatchOptions struct {
	Namespace string      // empty: every namespace
	Name      string      // empty: every object (needs Namespace for namespaced kinds)
	Selector  v1.Selector // applied to each changed object
	// Revision is the first revision to deliver; 0 means changes after now.
	Revision int64
	// ProgressNotify asks for Bookmark events while the watch is idle.
	ProgressNotify bool
}

// Watch streams changes to objects of a kind, in revision order, each
// exactly once. The channel closes when ctx ends or after an Error event.
// Because revisions survive restarts, a watch resumed with the revision
// after the last one seen continues seamlessly, even across a restart of
// the server, unless etcd has compacted that history (ErrResyncRequired).
func (s *Store) Watch(ctx context.Context, k *v1.KindInfo, opts WatchOptions) <-chan Event {
	key := s.listPrefix(k, opts.Namespace)
	wopts := []clientv3.OpOption{clientv3.WithPrevKV()}
	if opts.Name != "" {
		key = s.Key(k, opts.Namespace, opts.Name)
	} else {
		wopts = append(wopts, clientv3.WithPrefix())
	}
	if opts.Revision > 0 {
		wopts = append(wopts, clientv3.WithRev(opts.Revision))
	}
	if opts.ProgressNotify {
		wopts = append(wopts, clientv3.WithProgressNotify())
	}
	out := make(chan Event, 64)
	ctx, cancel := context.WithCancel(ctx)
	// RequireLeader makes the watch fail over instead of hanging when this
	// member loses its leader.
	wch := s.cli.Watch(clientv3.WithRequireLeader(ctx), key, wopts...)
	go func() {
		defer close(out)
		defer cancel()
		send := func(e Event) bool {
			select {
			case out <- e:
				return true
			case <-ctx.Done():
				return false
			}
		}
		for resp := range wch {
			if resp.CompactRevision != 0 {
				send(Event{Type: Error, Revision: resp.CompactRevision,
					Err: fmt.Errorf("watch %s from revision %d: history before %d was compacted: %w", k.Plural, opts.Revision, resp.CompactRevision, v1.ErrResyncRequired)})
				return
			}
			if err := resp.Err(); err != nil {
				send(Event{Type: Error, Err: fmt.Errorf("watch %s: %w", k.Plural, unavailable(err))})
				return
			}
			if resp.IsProgressNotify() {
				if !send(Event{Type: Bookmark, Revision: resp.Header.Revision}) {
					return
				}
				continue
			}
			batch := make([]Event, 0, len(resp.Events))
			for _, ev := range resp.Events {
				e, ok, err := convert(k, ev)
				if err != nil {
					send(Event{Type: Error, Revision: ev.Kv.ModRevision, Err: fmt.Errorf("%s: %w", ev.Kv.Key, err)})
					return
				}
				if !ok {
					continue
				}
				if opts.Selector != nil {
					if e, ok = selected(k, ev, e, opts.Selector); !ok {
						continue
					}
				}
				batch = append(batch, e)
			}
			// etcd sends the events of one revision (a transaction) in
			// one response.
			for i, e := range batch {
				e.More = i+1 < len(batch) && batch[i+1].Revision == e.Revision
				if !send(e) {
					return
				}
			}
		}
		// The etcd channel closes when ctx ends; anything else is a lost
		// connection the caller must hear about.
		if ctx.Err() == nil {
			send(Event{Type: Error, Err: fmt.Errorf("watch %s: %w: watch channel closed", k.Plural, v1.ErrUnavailable)})
		}
	}()
	return out
}

// selected passes on, as Kubernetes' watches do, what a watcher with a
// label selector sees of e: an object that comes to match is ADDED, one
// that stops matching is DELETED (with its new state), and one that
// neither matches nor matched is not seen.
func selected(k *v1.KindInfo, ev *clientv3.Event, e Event, sel v1.Selector) (Event, bool) {
	now := sel.Matches(e.Object.GetMeta().Labels)
	if e.Type != Modified {
		return e, now
	}
	// Without the previous value (compacted away when the change is at
	// the compaction revision, or unreadable) we cannot tell whether the
	// watcher was shown the object. Assume it was: a DELETED for an
	// object a watcher never saw is a no-op for it, while dropping the
	// event would leave a watcher that did see it with a ghost.
	before, known := false, false
	if ev.PrevKv != nil {
		if prev, err := decode(k, ev.PrevKv.Value, ev.PrevKv.ModRevision); err == nil {
			before, known = sel.Matches(prev.GetMeta().Labels), true
		}
	}
	switch {
	case !known && now:
		e.Type = Added
	case !known:
		e.Type = Deleted
	case now && !before:
		e.Type = Added
	case !now && before:
		e.Type = Deleted
	case !now:
		return e, false
	}
	return e, true
}

func convert(k *v1.KindInfo, ev *clientv3.Event) (Event, bool, error) {
	switch ev.Type {
	case mvccpb.PUT:
		o, err := decode(k, ev.Kv.Value, ev.Kv.ModRevision)
		if err != nil {
			return Event{}, false, err
		}
		t := Modified
		if ev.IsCreate() {
			t = Added
		}
		return Event{Type: t, Object: o, Revision: ev.Kv.ModRevision}, true, nil
	case mvccpb.DELETE:
		if ev.PrevKv == nil {
			// etcd leaves out the previous value when compaction has
			// removed it: a watch resumed at the compaction revision,
			// or one that was catching up when etcd compacted. An
			// event built from the key alone would lack what watchers
			// match deletes on (the UID, an instance's node, labels),
			// so the watcher lists again instead.
			return Event{}, false, fmt.Errorf("watch %s: the last state of %s, deleted at revision %d, was compacted away: %w",
				k.Plural, ev.Kv.Key, ev.Kv.ModRevision, v1.ErrResyncRequired)
		}
		o, err := decode(k, ev.PrevKv.Value, ev.Kv.ModRevision)
		if err != nil {
			return Event{}, false, err
		}
		return Event{Type: Deleted, Object: o, Revision: ev.Kv.ModRevision}, true, nil
	}
	return Event{}, false, nil
}

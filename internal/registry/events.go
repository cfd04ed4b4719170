package registry

import (
	"log/slog"
	"sync"
	"time"
)

// Event actions.
const (
	ActionPush   = "push"
	ActionDelete = "delete"
	// ActionToken is a registry token exchange (/v2/token), for the
	// audit only.
	ActionToken = "token"
)

// Event tells that a manifest was pushed or deleted. Blob traffic makes no
// events: a push is complete when its manifest lands.
type Event struct {
	Action     string // ActionPush or ActionDelete
	Repository string // NAMESPACE/NAME
	Namespace  string
	// Tag is set when the request named a tag: a push by tag, or the
	// delete of a tag.
	Tag string
	// Digest is the manifest's digest; empty for the delete of a tag.
	Digest    string
	MediaType string
	Size      int64
	// User and Node are who did it (the Identity of the request).
	User string
	Node string
	Time time.Time
}

// eventQueue hands events to Config.OnEvent on one goroutine, in order,
// so that a slow receiver (one writing to the store) never holds up a
// push. If the receiver falls more than eventBuffer events behind, new
// events are dropped and logged rather than blocking the registry.
type eventQueue struct {
	mu     sync.Mutex
	ch     chan Event
	done   chan struct{}
	closed bool
	log    *slog.Logger
}

const eventBuffer = 1024

func newEventQueue(fn func(Event), log *slog.Logger) *eventQueue {
	q := &eventQueue{log: log}
	if fn == nil {
		return q
	}
	q.ch = make(chan Event, eventBuffer)
	q.done = make(chan struct{})
	go func() {
		defer close(q.done)
		for ev := range q.ch {
			fn(ev)
		}
	}()
	return q
}

func (q *eventQueue) emit(ev Event) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.ch == nil || q.closed {
		return
	}
	select {
	case q.ch <- ev:
	default:
		q.log.Warn("registry event dropped: receiver is too slow", "action", ev.Action, "repo", ev.Repository, "tag", ev.Tag, "digest", ev.Digest)
	}
}

// close stops accepting events and waits until the queued ones are
// delivered.
func (q *eventQueue) close() {
	q.mu.Lock()
	if q.ch == nil || q.closed {
		q.mu.Unlock()
		return
	}
	q.closed = true
	close(q.ch)
	q.mu.Unlock()
	<-q.done
}

package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// Event is one change from a watch.
type Event struct {
	// Type is ADDED, MODIFIED, DELETED, BOOKMARK or ERROR.
	Type     string
	Revision int64
	Object   v1.Object
	// Err is set on ERROR: errors.Is(Err, v1.ErrResyncRequired) means the
	// revision asked for is gone from history; list again and re-watch.
	Err error
}

type wireEvent struct {
	Type     string          `json:"type"`
	Revision int64           `json:"revision"`
	Object   json.RawMessage `json:"object"`
	Error    *v1.Status      `json:"error"`
}

// WatchOptions narrow a watch.
type WatchOptions struct {
	Selector string
	// After is the last revision already seen in full (a List's or a
	// BOOKMARK's; an event's revision may be shared with events still to
	// come): the watch delivers every change after it. Zero first
	// delivers every existing object as ADDED, then changes.
	After int64
}

// Watch streams changes to a kind in ns (every namespace when empty). If
// the connection drops, it reconnects and resumes after the last revision
// it delivered in full, so the caller sees every change once and in order,
// even across a restart of the server. The existing objects (when
// opts.After is zero) come only once the whole list has arrived, just
// before the first BOOKMARK. The channel closes when ctx ends or after an
// ERROR event.
func (c *Client) Watch(ctx context.Context, kind, ns string, opts WatchOptions) <-chan Event {
	out := make(chan Event, 64)
	k, ok := v1.LookupKind(kind)
	go func() {
		defer close(out)
		if !ok {
			out <- Event{Type: "ERROR", Err: fmt.Errorf("%w: unknown kind %q", v1.ErrInvalid, kind)}
			return
		}
		if _, err := collectionPath(k, ns); err != nil {
			out <- Event{Type: "ERROR", Err: err}
			return
		}
		w := &watchStream{c: c, k: k, ns: ns, selector: opts.Selector, out: out,
			pos: resumePoint{done: opts.After, cur: opts.After},
			// Until the first bookmark, the server is replaying the
			// current list in key (not revision) order; a resume from
			// the middle of it could skip objects, so a drop then
			// starts over.
			listing: opts.After == 0,
		}
		w.run(ctx)
	}()
	return out
}

// watchStream is one Watch: its connections, one after another, and what
// it has delivered so far.
type watchStream struct {
	c        *Client
	k        *v1.KindInfo
	ns       string
	selector string
	out      chan<- Event
	backoff  time.Duration // before the next reconnect

	pos     resumePoint
	listing bool
	// listed holds the initial list until its bookmark: a list cut short
	// by a drop must not reach the caller, as the next one may lack
	// objects the first had (deleted in between), and nothing would
	// ever report them DELETED.
	listed []Event
}

const watchRetryMin, watchRetryMax = 50 * time.Millisecond, 2 * time.Second

// watchIdle is how long a connection may go without a line before the
// watch takes it for dead and reconnects: the server sends a BOOKMARK on
// an idle stream every few seconds, and a half-open connection (a server
// machine gone, a NAT entry dropped) would otherwise be waited on until
// TCP keepalive gives up, minutes later.
var watchIdle = 20 * time.Second

// Temporary reports whether an error of a request or a stream is worth
// trying again for: the server or a proxy in front of it restarting or
// overloaded (503, 502, 504, 429).
func Temporary(err error) bool {
	if errors.Is(err, v1.ErrUnavailable) || errors.Is(err, v1.ErrTooManyRequest) {
		return true
	}
	var se *v1.StatusError
	if errors.As(err, &se) {
		switch se.Status.Code {
		case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout, http.StatusTooManyRequests:
			return true
		}
	}
	return false
}

func (w *watchStream) run(ctx context.Context) {
	w.backoff = watchRetryMin
	for ctx.Err() == nil {
		q := url.Values{"watch": {"true"}}
		if w.selector != "" {
			q.Set("labelSelector", w.selector)
		}
		if !w.listing {
			q.Set("revision", strconv.FormatInt(w.pos.done, 10))
		}
		resp, err := w.c.send(ctx, w.c.stream, http.MethodGet, Path(w.k, w.ns, ""), q, nil)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if !Temporary(err) {
				w.emit(ctx, Event{Type: "ERROR", Err: err})
				return
			}
			if !w.pause(ctx) {
				return
			}
			continue
		}
		w.listed = w.listed[:0]
		over, progressed := w.read(ctx, resp.Body)
		resp.Body.Close()
		if over {
			return
		}
		// A connection that brought nothing (closed at once, or an
		// ERROR worth retrying) waits before the next, as a failed
		// request does.
		if progressed {
			w.backoff = watchRetryMin
		} else if !w.pause(ctx) {
			return
		}
	}
}

// pause waits out the back-off before a reconnect, and doubles it; false
// when ctx ended.
func (w *watchStream) pause(ctx context.Context) bool {
	select {
	case <-time.After(w.backoff):
	case <-ctx.Done():
		return false
	}
	w.backoff = min(w.backoff*2, watchRetryMax)
	return true
}

// read passes on the events of one connection. It reports whether the
// watch is over (an ERROR that retrying cannot help, or ctx ended), and
// whether the connection brought anything; otherwise the connection
// dropped (or went silent for watchIdle, or the server said to retry)
// and the caller reconnects.
func (w *watchStream) read(ctx context.Context, body io.ReadCloser) (over, progressed bool) {
	idle := time.AfterFunc(watchIdle, func() { body.Close() })
	defer idle.Stop()
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		idle.Reset(watchIdle)
		var we wireEvent
		if err := json.Unmarshal(sc.Bytes(), &we); err != nil {
			// A line cut short (the connection broke in it): resume from
			// the last event read, which brings this one again.
			return false, progressed
		}
		ev := Event{Type: we.Type, Revision: we.Revision}
		switch we.Type {
		case "ERROR":
			st := v1.Status{Code: http.StatusInternalServerError, Message: "watch error"}
			if we.Error != nil {
				st = *we.Error
			}
			ev.Err = &v1.StatusError{Status: st}
			if Temporary(ev.Err) {
				// The server's own watch of its store was cut (etcd
				// lost its leader, say): resume from where we are.
				return false, progressed
			}
			w.emit(ctx, ev)
			return true, progressed
		case "BOOKMARK":
			progressed = true
			w.pos.bookmark(ev.Revision)
			if w.listing {
				w.listing = false
				for _, l := range w.listed {
					if !w.emit(ctx, l) {
						return true, progressed
					}
				}
				w.listed = nil
			}
		default:
			o, err := decodeObject(w.k.Kind, we.Object)
			if err != nil {
				// Dropped, a DELETED would leave the caller's copy for
				// good; resumed, it would come again and again. The
				// watch ends with the error: the caller lists again,
				// and the list fails saying the same.
				w.emit(ctx, Event{Type: "ERROR", Revision: we.Revision, Err: fmt.Errorf("watch %s: event at revision %d cannot be read (is the server newer than this client?): %w", w.k.Plural, we.Revision, err)})
				return true, progressed
			}
			ev.Object = o
			progressed = true
			if w.listing {
				w.listed = append(w.listed, ev)
				continue
			}
			if !w.pos.deliver(ev.Revision, o.GetMeta().Key()) {
				continue
			}
		}
		if !w.emit(ctx, ev) {
			return true, progressed
		}
	}
	return ctx.Err() != nil, progressed
}

func (w *watchStream) emit(ctx context.Context, ev Event) bool {
	select {
	case w.out <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}

// resumePoint is where a watch can pick up after a drop without losing or
// repeating an event. One transaction makes several events at the same
// revision, and the connection can drop between two of them; resuming
// after that revision would lose the rest, so the watch resumes after
// the last revision delivered in full and skips the events of the next
// one it has already passed on. An object changes at most once in a
// revision, so its key tells them apart.
type resumePoint struct {
	done int64           // every event up to this revision was delivered
	cur  int64           // the revision of the last event delivered
	keys map[string]bool // the objects whose event at cur was delivered
}

// bookmark records the server's word that every event up to rev was sent.
func (p *resumePoint) bookmark(rev int64) {
	p.done = max(p.done, rev)
	if rev > p.cur {
		p.cur = rev
		clear(p.keys)
	}
}

// deliver records an event of the object key at rev and reports whether
// it is new, rather than a replay after a resume.
func (p *resumePoint) deliver(rev int64, key string) bool {
	switch {
	case rev < p.cur:
		// Out of order: not from a server that keeps its promises, but
		// hiding it would be worse than passing it on.
		return true
	case rev == p.cur && p.keys[key]:
		return false
	case rev > p.cur:
		// Events come in revision order: the first of a new revision
		// completes every one before it.
		p.done = max(p.done, rev-1)
		p.cur = rev
		clear(p.keys)
	}
	if p.keys == nil {
		p.keys = map[string]bool{}
	}
	p.keys[key] = true
	return true
}

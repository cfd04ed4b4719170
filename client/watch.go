package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	// After is the last revision already seen: the watch delivers every
	// change after it. Zero first delivers every existing object as
	// ADDED, then changes.
	After int64
}

// Watch streams changes to a kind in ns (every namespace when empty). If
// the connection drops, it reconnects and resumes after the last revision
// it delivered, so the caller sees every change once and in order, even
// across a restart of the server. The channel closes when ctx ends or after
// an ERROR event.
func (c *Client) Watch(ctx context.Context, kind, ns string, opts WatchOptions) <-chan Event {
	out := make(chan Event, 64)
	k, ok := v1.LookupKind(kind)
	go func() {
		defer close(out)
		if !ok {
			out <- Event{Type: "ERROR", Err: fmt.Errorf("%w: unknown kind %q", v1.ErrInvalid, kind)}
			return
		}
		last := opts.After
		// Until the first bookmark, the server is replaying the current
		// list in key (not revision) order; a resume from the middle of
		// it could skip objects, so a drop then starts over.
		listing := last == 0
		backoff := 50 * time.Millisecond
		for ctx.Err() == nil {
			q := url.Values{"watch": {"true"}}
			if opts.Selector != "" {
				q.Set("labelSelector", opts.Selector)
			}
			if !listing {
				q.Set("revision", strconv.FormatInt(last, 10))
			}
			resp, err := c.send(ctx, c.stream, http.MethodGet, Path(k, ns, ""), q, nil)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				if !errors.Is(err, v1.ErrUnavailable) {
					out <- Event{Type: "ERROR", Err: err}
					return
				}
				select {
				case <-time.After(backoff):
				case <-ctx.Done():
					return
				}
				backoff = min(backoff*2, 2*time.Second)
				continue
			}
			sc := bufio.NewScanner(resp.Body)
			sc.Buffer(make([]byte, 64<<10), 16<<20)
			for sc.Scan() {
				var we wireEvent
				if err := json.Unmarshal(sc.Bytes(), &we); err != nil {
					continue
				}
				backoff = 50 * time.Millisecond
				ev := Event{Type: we.Type, Revision: we.Revision}
				switch we.Type {
				case "ERROR":
					st := v1.Status{Code: http.StatusInternalServerError, Message: "watch error"}
					if we.Error != nil {
						st = *we.Error
					}
					ev.Err = &v1.StatusError{Status: st}
					select {
					case out <- ev:
					case <-ctx.Done():
					}
					resp.Body.Close()
					return
				case "BOOKMARK":
					listing = false
				default:
					o, err := decodeObject(k.Kind, we.Object)
					if err != nil {
						continue
					}
					ev.Object = o
				}
				if !listing && ev.Revision > last {
					last = ev.Revision
				}
				if ev.Type == "BOOKMARK" && ev.Revision > last {
					last = ev.Revision
				}
				select {
				case out <- ev:
				case <-ctx.Done():
					resp.Body.Close()
					return
				}
			}
			resp.Body.Close()
		}
	}()
	return out
}

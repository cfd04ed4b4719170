package client

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A watch whose connection drops while the server is still replaying the
// current list starts the list over. Before, the partial first list had
// already reached the caller, so an object deleted in between was
// reported ADDED and never DELETED: the caller (an agent) kept a ghost.
func TestWatchDropDuringTheListShowsOnlyTheFullList(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		obj := func(name string, rev int) string {
			return fmt.Sprintf(`{"type":"ADDED","revision":%d,"object":{"kind":"Secret","metadata":{"name":%q,"namespace":"default","revision":%d}}}`+"\n", rev, name, rev)
		}
		switch conns.Add(1) {
		case 1: // a, then the connection drops mid-list
			fmt.Fprint(w, obj("a", 5))
			w.(http.Flusher).Flush()
			return
		default: // a was deleted meanwhile (revision 7); the list is now b only
			fmt.Fprint(w, obj("b", 6))
			fmt.Fprint(w, `{"type":"BOOKMARK","revision":7}`+"\n")
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}
	}))
	defer srv.Close()
	c, err := New(Config{Server: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var got []string
	for ev := range c.Watch(ctx, "Secret", "default", WatchOptions{}) {
		if ev.Object != nil {
			got = append(got, ev.Type+" "+ev.Object.GetMeta().Name)
			continue
		}
		got = append(got, fmt.Sprint(ev.Type, " ", ev.Revision))
		if ev.Type == "BOOKMARK" || ev.Type == "ERROR" {
			break
		}
	}
	if want := []string{"ADDED b", "BOOKMARK 7"}; !slices.Equal(got, want) {
		t.Errorf("events %q, want %q: secret a, gone from the full list, must not be shown", got, want)
	}
}

// step is one line of a fake server's watch history.
type step struct {
	typ  string // ADDED, MODIFIED, DELETED, or FILTERED
	name string
	rev  int64
}

// fakeWatchServer serves a watch of secrets with history: a request with
// revision=N gets a BOOKMARK at N and then every step after N, as the API
// server does. A FILTERED step is an event the server leaves out (an
// instance on another node, for an agent), which it sends as a BOOKMARK
// at the revision before. The first connection drops after cut steps.
// It returns the revision each connection asked for.
func fakeWatchServer(t *testing.T, history []step, cut int) (*httptest.Server, func() []string) {
	t.Helper()
	var mu sync.Mutex
	var asked []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		asked = append(asked, r.URL.Query().Get("revision"))
		first := len(asked) == 1
		mu.Unlock()
		var after int64
		fmt.Sscan(r.URL.Query().Get("revision"), &after)
		w.Header().Set("Content-Type", "application/x-ndjson")
		fmt.Fprintf(w, `{"type":"BOOKMARK","revision":%d}`+"\n", after)
		sent := 0
		for _, s := range history {
			if s.rev <= after {
				continue
			}
			if s.typ == "FILTERED" {
				fmt.Fprintf(w, `{"type":"BOOKMARK","revision":%d}`+"\n", s.rev-1)
			} else {
				fmt.Fprintf(w, `{"type":%q,"revision":%d,"object":{"kind":"Secret","metadata":{"name":%q,"namespace":"default","revision":%d}}}`+"\n", s.typ, s.rev, s.name, s.rev)
			}
			if sent++; first && sent == cut {
				w.(http.Flusher).Flush()
				return // the connection drops
			}
		}
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)
	return srv, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(asked)
	}
}

// One transaction makes several events at one revision (an App's delete
// prunes its Revisions), and the connection can drop between two of them.
// The watch then resumes after the revision before, and skips what it
// already passed on of the interrupted one. Before, it resumed after the
// interrupted revision and its other events were lost.
func TestWatchResumesInsideATransaction(t *testing.T) {
	history := []step{
		{"DELETED", "a", 7}, {"DELETED", "b", 7}, {"DELETED", "c", 7},
		{"ADDED", "d", 8},
	}
	want := []string{"DELETED a 7", "DELETED b 7", "DELETED c 7", "ADDED d 8"}
	tests := []struct {
		name      string
		history   []step
		cut       int
		wantAsked []string
	}{
		{
			name:      "a drop between two events of a revision loses neither",
			history:   history,
			cut:       1,
			wantAsked: []string{"5", "6"},
		},
		{
			name: "a drop after a left-out event of a revision loses neither",
			history: []step{
				{"DELETED", "a", 7}, {"FILTERED", "x", 7}, {"DELETED", "b", 7}, {"DELETED", "c", 7},
				{"ADDED", "d", 8},
			},
			cut:       2,
			wantAsked: []string{"5", "6"},
		},
		{
			name:      "a drop after the last event of a revision repeats none",
			history:   history,
			cut:       3,
			wantAsked: []string{"5", "6"},
		},
		{
			name:      "a drop after a later revision resumes after the one before",
			history:   history,
			cut:       4,
			wantAsked: []string{"5", "7"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, asked := fakeWatchServer(t, tt.history, tt.cut)
			c, err := New(Config{Server: srv.URL})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ch := c.Watch(ctx, "Secret", "default", WatchOptions{After: 5})
			var got []string
			timeout := time.After(5 * time.Second)
			// After the last event, wait for the reconnect (if any) to
			// show what it would repeat.
			var settle <-chan time.Time
		read:
			for {
				select {
				case ev := <-ch:
					if ev.Type == "ERROR" {
						t.Fatalf("watch error: %v", ev.Err)
					}
					if ev.Object == nil {
						continue
					}
					got = append(got, fmt.Sprint(ev.Type, " ", ev.Object.GetMeta().Name, " ", ev.Revision))
					if len(got) >= len(want) && settle == nil {
						settle = time.After(300 * time.Millisecond)
					}
				case <-settle:
					break read
				case <-timeout:
					break read
				}
			}
			if !slices.Equal(got, want) {
				t.Errorf("events %q, want %q", got, want)
			}
			if a := asked(); !slices.Equal(a, tt.wantAsked) {
				t.Errorf("connections asked for revisions %q, want %q", a, tt.wantAsked)
			}
		})
	}
}

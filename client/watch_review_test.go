package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// The server ends a watch with ERROR 503 when its etcd watch is cut (a
// leader change: WithRequireLeader, or "watch channel closed"). That is a
// dropped connection, not a resync: Watch promises to reconnect and resume
// after a drop, yet passed the 503 on and closed, so `gantry get -w`
// exited on an etcd leader election.
func TestWatchResumesAfterAnUnavailableError(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		switch conns.Add(1) {
		case 1:
			fmt.Fprint(w, `{"type":"BOOKMARK","revision":7}`+"\n")
			fmt.Fprint(w, `{"type":"ERROR","error":{"code":503,"reason":"Unavailable","message":"watch secrets: unavailable: watch channel closed"}}`+"\n")
		default:
			serveResumed(w, r)
		}
	}))
	defer srv.Close()
	if err := watchForTheChange(srv.URL, 3*time.Second); err != nil {
		t.Fatalf("after an ERROR 503: %v; want it to resume after revision 7", err)
	}
}

// A reverse proxy in front of the server answers 502/504 while the server
// restarts. The watch treated only 503 as transient and gave up on these,
// although its doc promises to resume "even across a restart of the server".
func TestWatchRetriesABadGatewayDuringARestart(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if conns.Add(1) == 1 {
			http.Error(w, "upstream connect error", http.StatusBadGateway)
			return
		}
		serveResumed(w, r)
	}))
	defer srv.Close()
	if err := watchForTheChange(srv.URL, 3*time.Second); err != nil {
		t.Fatalf("after a 502: %v", err)
	}
}

// An error answer without a JSON Status (a proxy's, or a truncated body)
// was mapped by status code alone; 409 then became ErrAlreadyExists, never
// ErrConflict, so a caller retrying updates on conflict did not retry.
func TestBare409ToAnUpdateIsAConflict(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "conflict", http.StatusConflict)
	}))
	defer srv.Close()
	c, _ := New(Config{Server: srv.URL})
	err := c.Update(context.Background(), &v1.Secret{TypeMeta: v1.TypeMeta{Kind: "Secret"}, Metadata: v1.ObjectMeta{Name: "a", Namespace: "default", Revision: 3}})
	if errors.Is(err, v1.ErrAlreadyExists) && !errors.Is(err, v1.ErrConflict) {
		t.Fatalf("bare 409 on an update: %v is ErrAlreadyExists, not ErrConflict", err)
	}
}

// The server sends a BOOKMARK every few seconds on an idle watch (5 s with
// the embedded etcd; docs/api.md "Idle streams get a BOOKMARK every few
// seconds"), yet the client never noticed that they stopped: a connection
// that went silent (server host lost, NAT entry dropped, half-open TCP)
// was only given up once TCP keepalive declared it dead, minutes later,
// and every change in between reached the caller (an agent) that late.
func TestWatchNoticesASilentConnection(t *testing.T) {
	old := watchIdle
	watchIdle = 500 * time.Millisecond
	t.Cleanup(func() { watchIdle = old })
	var conns atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if conns.Add(1) > 1 {
			serveResumed(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		fmt.Fprint(w, `{"type":"BOOKMARK","revision":7}`+"\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done() // the first connection: silent from now on
	}))
	defer srv.Close()
	if err := watchForTheChange(srv.URL, 10*time.Second); err != nil {
		t.Fatalf("%v: 10 s without a byte (watchIdle 500 ms) and the watch still waits on the same connection (%d connections)", err, conns.Load())
	}
}

// A connection that the server (or a proxy) ends at once, without an
// event, was reconnected at once, again and again: the backoff applied
// only when the request itself failed, so the watch spun, hammering the
// server, instead of slowing down.
func TestWatchBacksOffOnEmptyStreams(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conns.Add(1)
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	c, _ := New(Config{Server: srv.URL})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for range c.Watch(ctx, "Secret", "default", WatchOptions{After: 7}) {
	}
	// With the 50 ms..2 s backoff, a second has room for about 5.
	if n := conns.Load(); n > 20 {
		t.Fatalf("%d connections in one second", n)
	}
}

// serveResumed answers a watch resumed after revision 7: a bookmark at 7,
// then the change at 8, then nothing until the client goes.
func serveResumed(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/x-ndjson")
	fmt.Fprint(w, `{"type":"BOOKMARK","revision":7}`+"\n")
	fmt.Fprint(w, `{"type":"ADDED","revision":8,"object":{"kind":"Secret","metadata":{"name":"a","namespace":"default","revision":8}}}`+"\n")
	w.(http.Flusher).Flush()
	<-r.Context().Done()
}

// watchForTheChange watches secrets of server from revision 7 until the
// change at 8 arrives: nil then, the ERROR the watch ended with, or an
// error when it did not come within d.
func watchForTheChange(server string, d time.Duration) error {
	c, _ := New(Config{Server: server})
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for ev := range c.Watch(ctx, "Secret", "default", WatchOptions{After: 7}) {
		if ev.Type == "ERROR" {
			return fmt.Errorf("watch ended with %v", ev.Err)
		}
		if ev.Type == "ADDED" {
			return nil
		}
	}
	return fmt.Errorf("no change within %s", d)
}

// An event whose object the client could not decode (a server newer than
// the client, say) was dropped without a word: a DELETED lost so left the
// caller's copy of the object for good. The watch ends with an ERROR that
// says so now, and the caller lists again.
func TestWatchEndsOnAnEventItCannotRead(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		fmt.Fprint(w, `{"type":"BOOKMARK","revision":7}`+"\n")
		fmt.Fprint(w, `{"type":"DELETED","revision":8,"object":{"kind":"Secret","metadata":{"name":"db","namespace":"default","labels":"not a map"}}}`+"\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	defer srv.Close()
	c, _ := New(Config{Server: srv.URL})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var got []Event
	for ev := range c.Watch(ctx, "Secret", "default", WatchOptions{After: 7}) {
		got = append(got, ev)
	}
	last := got[len(got)-1]
	if last.Type != "ERROR" || last.Err == nil || ctx.Err() != nil {
		t.Fatalf("events %+v (ctx %v); want the watch to end with an ERROR before the deadline", got, ctx.Err())
	}
	if msg := last.Err.Error(); !strings.Contains(msg, "cannot be read") || !strings.Contains(msg, "revision 8") {
		t.Errorf("the ERROR says %q; want it to name the event it could not read", msg)
	}
}

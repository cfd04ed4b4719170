package apiserver_test

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/apiserver"
)

// A client that stops reading followed logs (of an App or of an
// instance), but keeps its connection, held the handler, its goroutines
// and a request to every agent for as long as the connection lived. A write now has
// watchWriteTimeout to go out, as a watch's has.
func TestFollowedLogsEndWhenTheClientStopsReading(t *testing.T) {
	apiserver.SetWatchWriteTimeout(t.Cleanup, time.Second)
	var active, lines atomic.Int64
	agent := func(w http.ResponseWriter, r *http.Request) {
		active.Add(1)
		defer active.Add(-1)
		w.Header().Set("Content-Type", "application/x-ndjson")
		pad := strings.Repeat("x", 200)
		for i := 0; r.Context().Err() == nil; i++ {
			if _, err := fmt.Fprintf(w, `{"time":"2025-01-02T03:04:05Z","stream":"stdout","line":"%d %s"}`+"\n", i, pad); err != nil {
				return
			}
			lines.Add(1)
		}
	}
	ts := logServer(t, agent, "")
	for _, path := range []string{"/api/v1/namespaces/default/apps/web/logs?follow=true", "/api/v1/namespaces/default/instances/web-n1/logs?follow=true"} {
		lines.Store(0)
		conn, err := net.Dial("tcp", strings.TrimPrefix(ts.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		if tc, ok := conn.(*net.TCPConn); ok {
			tc.SetReadBuffer(4096)
		}
		fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", path, ts.Token)
		// Never read: once the stream backs up, a write times out.
		deadline := time.Now().Add(20 * time.Second)
		for active.Load() != 0 || lines.Load() == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("GET %s: 20 s after its client stopped reading (connection kept, %d lines sent), the followed logs still hold the agent request", path, lines.Load())
			}
			time.Sleep(50 * time.Millisecond)
		}
		conn.Close()
	}
}

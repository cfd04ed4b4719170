package apiserver_test

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/apiserver"
)

// Followed logs were authorized when they opened and went on after the
// caller lost the right to read them (a revoked token, a binding taken
// away), until the client or the container ended them. Like a watch, the
// stream is now checked again when such a write happens and ends; a
// follower that reconnects is refused.
func TestFollowedLogsEndWhenTheCallerLosesTheRight(t *testing.T) {
	// No heartbeat comes in time: only the write's wake-up can end them.
	apiserver.SetWatchHeartbeat(t.Cleanup, time.Hour)
	var active atomic.Int32
	agent := func(w http.ResponseWriter, r *http.Request) {
		active.Add(1)
		defer active.Add(-1)
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.Write([]byte(`{"time":"2025-01-02T03:04:05Z","stream":"stdout","line":"hello"}` + "\n"))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}
	remote := httptest.NewServer(http.HandlerFunc(agent))
	t.Cleanup(remote.Close)
	ts := logServer(t, agent, remote.URL)

	for i, path := range []string{
		"/api/v1/namespaces/default/instances/web-n1/logs?follow=true", // in-process agent
		"/api/v1/namespaces/default/instances/web-n2/logs?follow=true", // remote agent
		"/api/v1/namespaces/default/apps/web/logs?follow=true",         // both
	} {
		user := []string{"lou", "lin", "lea"}[i]
		_, tok := govUser(t, ts, user, "viewer", "default")
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: HTTP %d", path, resp.StatusCode)
		}
		br := bufio.NewReader(resp.Body)
		if _, err := br.ReadString('\n'); err != nil {
			t.Fatalf("%s: first line: %v", path, err)
		}

		if code, out := raw(t, ts, http.MethodDelete, "/api/v1/rolebindings/"+user+"-default", "", nil); code != http.StatusOK {
			t.Fatalf("delete binding: %d %s", code, trunc(out))
		}
		ended := make(chan error, 1)
		go func() {
			for {
				if _, err := br.ReadString('\n'); err != nil {
					ended <- err
					return
				}
			}
		}()
		select {
		case <-ended:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the stream went on 10s after the caller's binding was deleted", path)
		}
		resp.Body.Close()
		deadline := time.Now().Add(3 * time.Second)
		for active.Load() != 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := active.Load(); n != 0 {
			t.Fatalf("%s: %d agent requests still running after the stream ended", path, n)
		}
		// Reconnecting is refused.
		req, _ = http.NewRequestWithContext(ctx, http.MethodGet, ts.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("%s: reconnecting got HTTP %d, want 403", path, resp.StatusCode)
		}
		cancel()
	}
}

// A stream whose caller keeps the right is not ended by an unrelated
// write of the auth kinds.
func TestFollowedLogsGoOnWhenAnotherCallerLosesARight(t *testing.T) {
	apiserver.SetWatchHeartbeat(t.Cleanup, time.Hour)
	agent := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.Write([]byte(`{"time":"2025-01-02T03:04:05Z","stream":"stdout","line":"hello"}` + "\n"))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}
	ts := logServer(t, agent, "")
	_, tok := govUser(t, ts, "kim", "viewer", "default")
	govUser(t, ts, "other", "viewer", "default")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.URL+"/api/v1/namespaces/default/instances/web-n1/logs?follow=true", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	checked := make(chan error, 4)
	apiserver.SetWatchRechecked(t.Cleanup, func(user string, err error) {
		if user == "kim" {
			checked <- err
		}
	})
	if code, out := raw(t, ts, http.MethodDelete, "/api/v1/rolebindings/other-default", "", nil); code != http.StatusOK {
		t.Fatalf("delete binding: %d %s", code, trunc(out))
	}
	select {
	case err := <-checked:
		if err != nil {
			t.Fatalf("kim's stream re-check: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("kim's stream was not checked again after a binding was deleted")
	}
	ended := make(chan error, 1)
	go func() {
		_, err := br.ReadString('\n')
		ended <- err
	}()
	select {
	case err := <-ended:
		t.Fatalf("kim's stream ended (%v) after another user's binding was deleted", err)
	case <-time.After(300 * time.Millisecond):
	}
}

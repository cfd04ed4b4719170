package apiserver_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/apiserver"
	"github.com/gantry-dev/gantry/internal/apiserver/apiservertest"
)

// The App logs endpoint answers 200 before it asks the agents, so it
// checks tail and since itself: a bad one is a 400 that says what to
// send, not a 200 with no lines. An instance whose agent refuses or
// cannot answer is left out of the merged logs.
func TestAppLogs(t *testing.T) {
	var asked atomic.Int32
	nodes := apiserver.NewNodes()
	nodes.AddLocal("n1", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		w.Header().Set("Content-Type", "application/x-ndjson")
		// Each instance's lines in time order, as an agent sends them;
		// the two instances' lines interleave in time.
		if strings.Contains(r.URL.Path, "/web-d/") {
			w.Write([]byte(`{"time":"2025-01-02T03:04:06Z","stream":"stdout","line":"second"}` + "\n" +
				`{"time":"2025-01-02T03:04:08Z","stream":"stdout","line":"fourth"}` + "\n"))
			return
		}
		w.Write([]byte(`{"time":"2025-01-02T03:04:05Z","stream":"stderr","line":"first"}` + "\n" +
			`{"time":"2025-01-02T03:04:07Z","stream":"stdout","line":"third"}` + "\n"))
	}))
	refuse := func(code int, reason string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			asked.Add(1)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			// A body with a time, so that only its status keeps it out.
			json.NewEncoder(w).Encode(map[string]any{"code": code, "reason": reason, "message": "no", "time": "2025-01-02T03:04:05Z", "line": "leaked"})
		})
	}
	nodes.AddLocal("n2", refuse(http.StatusBadRequest, "Invalid"))
	nodes.AddLocal("n3", refuse(http.StatusServiceUnavailable, "Unavailable"))
	ts := &testServer{apiservertest.Start(t, t.TempDir(), "127.0.0.1:0", apiserver.WithNodeProxy(nodes))}
	ctx := context.Background()
	if _, err := ts.client(t, ts.Token).Apply(ctx, newApp("web", "web:v1")); err != nil {
		t.Fatal(err)
	}
	for i, node := range []string{"n1", "n2", "n3", "n1"} {
		if i < 3 {
			if err := ts.Store.Create(ctx, &v1.Node{TypeMeta: v1.TypeMeta{Kind: "Node"}, Metadata: v1.ObjectMeta{Name: node}}); err != nil {
				t.Fatal(err)
			}
		}
		inst := &v1.Instance{TypeMeta: v1.TypeMeta{Kind: "Instance"},
			Metadata: v1.ObjectMeta{Name: "web-" + string(rune('a'+i)), Namespace: "default", Labels: map[string]string{v1.LabelApp: "web"}},
			Spec:     v1.InstanceSpec{App: "web", Revision: 1, Node: node}}
		if err := ts.Store.Create(ctx, inst); err != nil {
			t.Fatal(err)
		}
	}

	tests := []struct {
		name  string
		query string
		code  int
		says  string   // what a 400 says
		lines []string // the lines of a 200, as "instance line"
	}{
		{name: "a tail that is not a number is refused", query: "tail=abc", code: 400, says: `tail="abc": send the number of last lines`},
		{name: "a negative tail is refused", query: "tail=-1", code: 400, says: `tail="-1": send the number of last lines`},
		{name: "a since that is a duration is refused", query: "since=10m", code: 400, says: `since="10m": send an RFC 3339 time`},
		{name: "a negative sinceSeconds is refused", query: "sinceSeconds=-5", code: 400, says: `sinceSeconds="-5": send a whole number of seconds`},
		{name: "since and sinceSeconds together are refused", query: "sinceSeconds=5&since=2025-01-02T03:04:05Z", code: 400, says: "give since or sinceSeconds, not both"},
		// follow=yes was taken silently as no follow.
		{name: "a follow that is not a boolean is refused", query: "follow=yes", code: 400, says: `follow="yes": send true or false`},
		{name: "instances whose agent refuses or cannot answer are left out", query: "tail=5&since=2025-01-02T03:04:05.5Z", code: 200,
			lines: []string{"web-a first", "web-d second", "web-a third", "web-d fourth"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := asked.Load()
			code, body := raw(t, ts, "GET", "/api/v1/namespaces/default/apps/web/logs?"+tt.query, "", nil)
			if code != tt.code {
				t.Fatalf("answered %d %q, want %d", code, body, tt.code)
			}
			if tt.code != 200 {
				var st v1.Status
				if err := json.Unmarshal([]byte(body), &st); err != nil || st.Reason != "Invalid" || !strings.Contains(st.Message, tt.says) {
					t.Fatalf("answered %q, want a Status with reason Invalid saying %q", body, tt.says)
				}
				if n := asked.Load() - before; n != 0 {
					t.Errorf("agents were asked %d times for a request refused", n)
				}
				return
			}
			if n := asked.Load() - before; n != 4 {
				t.Errorf("agents were asked %d times, want once for each of the 4 instances", n)
			}
			var got []string
			for _, s := range strings.Split(strings.TrimSpace(body), "\n") {
				var l struct{ Instance, Line string }
				if err := json.Unmarshal([]byte(s), &l); err != nil {
					t.Fatalf("line %q: %v", s, err)
				}
				got = append(got, l.Instance+" "+l.Line)
			}
			if !slices.Equal(got, tt.lines) {
				t.Fatalf("lines %q, want %q", got, tt.lines)
			}
		})
	}
}

// The proxy to a remote agent aborts when the agent's stream breaks
// mid-answer. In the App logs' own goroutine that abort must end only that
// instance's logs, not the server.
func TestAppLogsSurviveABrokenAgentStream(t *testing.T) {
	agent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.Write([]byte(`{"time":"2025-01-02T03:04:05Z","stream":"stdout","line":"before the break"}` + "\n"))
		w.(http.Flusher).Flush()
		conn, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		conn.Close() // no end to the chunked body: the stream broke
	}))
	t.Cleanup(agent.Close)
	ts := &testServer{apiservertest.Start(t, t.TempDir(), "127.0.0.1:0", apiserver.WithNodeProxy(apiserver.NewNodes()))}
	ctx := context.Background()
	if _, err := ts.client(t, ts.Token).Apply(ctx, newApp("web", "web:v1")); err != nil {
		t.Fatal(err)
	}
	n := &v1.Node{TypeMeta: v1.TypeMeta{Kind: "Node"}, Metadata: v1.ObjectMeta{Name: "n1"}, Status: v1.NodeStatus{AgentURL: agent.URL}}
	if err := ts.Store.Create(ctx, n); err != nil {
		t.Fatal(err)
	}
	inst := &v1.Instance{TypeMeta: v1.TypeMeta{Kind: "Instance"},
		Metadata: v1.ObjectMeta{Name: "web-a", Namespace: "default", Labels: map[string]string{v1.LabelApp: "web"}},
		Spec:     v1.InstanceSpec{App: "web", Revision: 1, Node: "n1"}}
	if err := ts.Store.Create(ctx, inst); err != nil {
		t.Fatal(err)
	}
	code, body := raw(t, ts, "GET", "/api/v1/namespaces/default/apps/web/logs", "", nil)
	if code != 200 || !strings.Contains(body, "before the break") {
		t.Fatalf("answered %d %q, want 200 with the line sent before the break", code, body)
	}
	// A follow goes on (it reconnects, from the last line sent): the
	// line comes once, and the server stays up.
	cctx, cancel := context.WithTimeout(ctx, 3500*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(cctx, "GET", ts.URL+"/api/v1/namespaces/default/apps/web/logs?follow=true", nil)
	req.Header.Set("Authorization", "Bearer "+ts.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if n := strings.Count(string(b), "before the break"); n != 1 {
		t.Fatalf("a follow over a stream that breaks again and again sent the line %d times: %q", n, b)
	}
	if code, _ := raw(t, ts, "GET", "/api/v1/namespaces/default/apps/web/logs", "", nil); code != 200 {
		t.Fatalf("after the follow: %d", code)
	}
}

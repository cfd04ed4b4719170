package apiserver_test

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/apiserver"
	"github.com/gantry-dev/gantry/internal/apiserver/apiservertest"
)

// A client that leaves App logs (following or not) ends the requests to
// every agent, local and remote.
func TestAppLogsEndAgentRequestsWhenTheClientLeaves(t *testing.T) {
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
	ctx := context.Background()
	for _, q := range []string{"follow=true", ""} {
		cctx, cancel := context.WithCancel(ctx)
		req, _ := http.NewRequestWithContext(cctx, "GET", ts.URL+"/api/v1/namespaces/default/apps/web/logs?"+q, nil)
		req.Header.Set("Authorization", "Bearer "+ts.Token)
		var resp *http.Response
		if q != "" {
			var err error
			resp, err = http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(resp.Body)
			for range 2 {
				if _, err := br.ReadString('\n'); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
		} else {
			// Without follow nothing is sent before every agent ended.
			go func() {
				if r, err := http.DefaultClient.Do(req); err == nil {
					r.Body.Close()
				}
			}()
			deadline := time.Now().Add(2 * time.Second)
			for active.Load() < 2 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
		}
		cancel()
		if resp != nil {
			resp.Body.Close()
		}
		deadline := time.Now().Add(3 * time.Second)
		for active.Load() != 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := active.Load(); n != 0 {
			t.Fatalf("?%s: %d agent requests still running 3s after the client left", q, n)
		}
	}
}

// logServer starts a server whose App web has an instance web-n1 on node
// n1, whose agent is the in-process handler agent, and if remote is set
// an instance web-n2 on node n2, whose agent listens at remote.
func logServer(t *testing.T, agent http.HandlerFunc, remote string) *testServer {
	t.Helper()
	nodes := apiserver.NewNodes()
	nodes.AddLocal("n1", agent)
	ts := &testServer{apiservertest.Start(t, t.TempDir(), "127.0.0.1:0", apiserver.WithNodeProxy(nodes))}
	ctx := context.Background()
	if _, err := ts.client(t, ts.Token).Apply(ctx, newApp("web", "web:v1")); err != nil {
		t.Fatal(err)
	}
	ns := []*v1.Node{{TypeMeta: v1.TypeMeta{Kind: "Node"}, Metadata: v1.ObjectMeta{Name: "n1"}}}
	if remote != "" {
		ns = append(ns, &v1.Node{TypeMeta: v1.TypeMeta{Kind: "Node"}, Metadata: v1.ObjectMeta{Name: "n2"}, Status: v1.NodeStatus{AgentURL: remote}})
	}
	for _, n := range ns {
		if err := ts.Store.Create(ctx, n); err != nil {
			t.Fatal(err)
		}
		inst := &v1.Instance{TypeMeta: v1.TypeMeta{Kind: "Instance"},
			Metadata: v1.ObjectMeta{Name: "web-" + n.Metadata.Name, Namespace: "default", Labels: map[string]string{v1.LabelApp: "web"}},
			Spec:     v1.InstanceSpec{App: "web", Revision: 1, Node: n.Metadata.Name}}
		if err := ts.Store.Create(ctx, inst); err != nil {
			t.Fatal(err)
		}
	}
	return ts
}

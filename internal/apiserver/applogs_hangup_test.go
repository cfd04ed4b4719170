package apiserver_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/apiserver"
	"github.com/gantry-dev/gantry/internal/apiserver/apiservertest"
)

// A client that hung up in the middle of an App's logs (curl | head)
// left the handler stuck for good: each instance's reader waited for
// the node's handler, which was blocked writing into the pipe the reader
// no longer read. The handlers end, and so do the nodes' writers.
func TestAppLogsEndWhenTheClientHangsUp(t *testing.T) {
	served := make(chan struct{}, 8)
	nodes := apiserver.NewNodes()
	nodes.AddLocal("n1", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() { served <- struct{}{} }()
		w.Header().Set("Content-Type", "application/x-ndjson")
		base := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
		for i := range 5000 {
			if _, err := fmt.Fprintf(w, `{"time":%q,"stream":"stdout","line":"line %d %s"}`+"\n", base.Add(time.Duration(i)*time.Millisecond).Format(time.RFC3339Nano), i, strings.Repeat("x", 200)); err != nil {
				return
			}
		}
	}))
	ts := &testServer{apiservertest.Start(t, t.TempDir(), "127.0.0.1:0", apiserver.WithNodeProxy(nodes))}
	ctx := context.Background()
	if _, err := ts.client(t, ts.Token).Apply(ctx, newApp("web", "web:v1")); err != nil {
		t.Fatal(err)
	}
	if err := ts.Store.Create(ctx, &v1.Node{TypeMeta: v1.TypeMeta{Kind: "Node"}, Metadata: v1.ObjectMeta{Name: "n1"}}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"web-a", "web-b"} {
		inst := &v1.Instance{TypeMeta: v1.TypeMeta{Kind: "Instance"},
			Metadata: v1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{v1.LabelApp: "web"}},
			Spec:     v1.InstanceSpec{App: "web", Revision: 1, Node: "n1"}}
		if err := ts.Store.Create(ctx, inst); err != nil {
			t.Fatal(err)
		}
	}
	before := runtime.NumGoroutine()
	cctx, cancel := context.WithCancel(ctx)
	req, _ := http.NewRequestWithContext(cctx, "GET", ts.URL+"/api/v1/namespaces/default/apps/web/logs", nil)
	req.Header.Set("Authorization", "Bearer "+ts.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if !bufio.NewScanner(resp.Body).Scan() {
		t.Fatal("no first line")
	}
	cancel() // hang up after one line
	resp.Body.Close()
	for range 2 {
		select {
		case <-served:
		case <-time.After(10 * time.Second):
			t.Fatal("a node's log handler is still writing 10 s after the client hung up")
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before+5 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before+5 {
		t.Errorf("%d goroutines 10 s after the client hung up, %d before the request", n, before)
	}
}

package apiserver_test

import (
	"context"
	"net/http"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// A request that is wrong in itself (a method the path does not take, a
// bad query) got 503 from a server that keeps no metrics or reaches no
// agents, or for an instance not on a node yet, and the instance logs'
// query was judged by the agent alone. It is 405 or 400 wherever it is
// sent now.
func TestBadRequestsAreRefusedBeforeUnavailability(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0") // no metrics window, no agents
	inst := &v1.Instance{TypeMeta: v1.TypeMeta{Kind: "Instance"}, Metadata: v1.ObjectMeta{Name: "hello-1", Namespace: "default"},
		Spec: v1.InstanceSpec{App: "hello", Revision: 1}} // not on a node
	if err := ts.Store.Create(context.Background(), inst); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		method, path string
		want         int
	}{
		{http.MethodPost, "/api/v1/namespaces/default/apps/hello/metrics", http.StatusMethodNotAllowed},
		{http.MethodGet, "/api/v1/namespaces/default/apps/hello/metrics?since=-5m", http.StatusBadRequest},
		{http.MethodGet, "/api/v1/namespaces/default/apps/hello/logs?tail=-1", http.StatusBadRequest},
		{http.MethodGet, "/api/v1/namespaces/default/instances/hello-1/logs?tail=-1", http.StatusBadRequest},
		{http.MethodGet, "/api/v1/namespaces/default/instances/hello-1/logs?follow=maybe", http.StatusBadRequest},
		// And a good one still learns the server cannot answer it.
		{http.MethodGet, "/api/v1/namespaces/default/apps/hello/metrics?since=5m", http.StatusServiceUnavailable},
		{http.MethodGet, "/api/v1/namespaces/default/instances/hello-1/logs?tail=5", http.StatusServiceUnavailable},
	} {
		if code, body := raw(t, ts, c.method, c.path, "", nil); code != c.want {
			t.Errorf("%s %s = %d %s, want %d", c.method, c.path, code, trunc(body), c.want)
		}
	}
}

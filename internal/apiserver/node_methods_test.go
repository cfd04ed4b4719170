package apiserver_test

import (
	"context"
	"net/http"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/store"
)

// The agents' node subresources take the method the API reference names
// (POST register and heartbeat, PUT status): another method is 405, as
// for every other subresource, not the write.
func TestNodeSubresourceMethods(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	if code, out := raw(t, ts, http.MethodPost, "/api/v1/nodes/n1/register", "application/json", []byte(`{"status":{}}`)); code != 200 {
		t.Fatalf("register: %d %s", code, out)
	}
	for _, c := range []struct{ method, path, body string }{
		{http.MethodGet, "/api/v1/nodes/n1/heartbeat", ""},
		{http.MethodDelete, "/api/v1/nodes/n1/heartbeat", ""},
		{http.MethodDelete, "/api/v1/nodes/n1/register", `{"status":{}}`},
		{http.MethodDelete, "/api/v1/nodes/n1/status", `{"status":{}}`},
	} {
		if code, out := raw(t, ts, c.method, c.path, "application/json", []byte(c.body)); code != http.StatusMethodNotAllowed {
			t.Errorf("%s %s: %d %.100s; want 405", c.method, c.path, code, out)
		}
	}
}

// A read-only role (get on every resource, bound in every namespace: a
// "cluster viewer") once kept a node Ready by GET on its heartbeat, and
// registered new nodes with a GET: both were authorized as "get".
func TestReadOnlyRoleCannotWriteNodes(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	admin := ts.client(t, ts.Token)
	o, _ := v1.DecodeManifest([]byte("kind: Role\nname: cluster-viewer\nrules: [{verbs: [get, list, watch], resources: [\"*\"]}]\n"))
	if _, err := admin.Apply(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	_, tok := clusterUser(t, ts, "auditor", "cluster-viewer")
	if code, out := raw(t, ts, http.MethodPost, "/api/v1/nodes/n1/register", "application/json", []byte(`{"status":{}}`)); code != 200 {
		t.Fatalf("register: %d %s", code, out)
	}
	for _, c := range []struct{ path, body string }{
		{"/api/v1/nodes/n1/heartbeat", ""},
		{"/api/v1/nodes/rogue/register", `{"status":{}}`},
	} {
		if code, _ := rawAs(t, ts, tok, http.MethodGet, c.path, "application/json", []byte(c.body)); code < 300 {
			t.Errorf("read-only user: GET %s answered %d: a write", c.path, code)
		}
	}
	if _, err := store.Get[*v1.Node](context.Background(), ts.Store, "", "rogue"); err == nil {
		t.Errorf("node rogue was registered by a read-only user")
	}
}

package apiserver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/apiserver"
	"github.com/gantry-dev/gantry/internal/apiserver/apiservertest"
	"github.com/gantry-dev/gantry/internal/pki"
	"github.com/gantry-dev/gantry/internal/store"
)

// A join token says a machine may join, not that it is the machine that
// had a name. A join under the name of a node that is down (a reboot)
// took over that Node whole: its admin-set node-restriction labels, which
// Apps that need trusted machines are constrained by, and its instances,
// whose secrets it could then read. Both are dropped now.
func TestJoinUnderADeadNodesNameTakesNoneOfItsTrust(t *testing.T) {
	srv, joinTok := deadTrustedNode(t)
	ctx := context.Background()
	resp, _, _ := joinAs(t, srv.URL, joinTok, "vault-1")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("a join under a dead node's name: HTTP %d; want 200 (a reinstall)", resp.StatusCode)
	}
	got, err := store.Get[*v1.Node](ctx, srv.Store, "", "vault-1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Metadata.Labels["node-restriction.gantry.dev/trusted"] != "" {
		t.Errorf("a machine that joined with a join token under a down node's name holds its admin-set label node-restriction.gantry.dev/trusted=%s",
			got.Metadata.Labels["node-restriction.gantry.dev/trusted"])
	}
	if _, err := store.Get[*v1.Instance](ctx, srv.Store, "default", "vault-app-1"); !errors.Is(err, v1.ErrNotFound) {
		t.Errorf("the dead node's instance is still bound to the machine that joined under its name: %v", err)
	}
}

// A join under a dead node's name with a certificate request that is
// refused (missing, not PEM, for another name) answered 400 having
// already dropped the node's admin-set labels and deleted its instances.
// Nothing is written before the request is signed now.
func TestJoinRefusedForItsCSRWritesNothing(t *testing.T) {
	srv, joinTok := deadTrustedNode(t)
	ctx := context.Background()
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	other, err := pki.NodeCSR("vault-2", key)
	if err != nil {
		t.Fatal(err)
	}
	for _, csr := range []string{"", "not a csr", string(other)} {
		b, _ := json.Marshal(apiserver.JoinRequest{Node: "vault-1", Token: joinTok, CSR: csr})
		resp, err := http.Post(srv.URL+"/api/v1/join", "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("join with CSR %.20q: HTTP %d; want 400", csr, resp.StatusCode)
		}
		got, err := store.Get[*v1.Node](ctx, srv.Store, "", "vault-1")
		if err != nil || got.Metadata.Labels["node-restriction.gantry.dev/trusted"] != "true" {
			t.Fatalf("after a join refused for its CSR %.20q the node lost its label: %v %v", csr, got, err)
		}
		if _, err := store.Get[*v1.Instance](ctx, srv.Store, "default", "vault-app-1"); err != nil {
			t.Fatalf("after a join refused for its CSR %.20q the node's instance is gone: %v", csr, err)
		}
	}
}

// deadTrustedNode is a join server with a join token, and a Node vault-1
// that is not ready (rebooting), carries the admin-set label
// node-restriction.gantry.dev/trusted=true and has instance vault-app-1.
func deadTrustedNode(t *testing.T) (*apiservertest.Server, string) {
	t.Helper()
	srv, _, joinTok := startJoinServer(t)
	ctx := context.Background()
	n := &v1.Node{TypeMeta: v1.TypeMeta{Kind: "Node"}, Metadata: v1.ObjectMeta{Name: "vault-1",
		Labels: map[string]string{"node-restriction.gantry.dev/trusted": "true"}}}
	if err := srv.Store.Create(ctx, n); err != nil {
		t.Fatal(err)
	}
	inst := &v1.Instance{TypeMeta: v1.TypeMeta{Kind: "Instance"}, Metadata: v1.ObjectMeta{Name: "vault-app-1", Namespace: "default"},
		Spec: v1.InstanceSpec{App: "vault-app", Revision: 1, Node: "vault-1"}}
	if err := srv.Store.Create(ctx, inst); err != nil {
		t.Fatal(err)
	}
	return srv, joinTok
}

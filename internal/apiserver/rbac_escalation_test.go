package apiserver_test

import (
	"context"
	"errors"
	"net/http"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/client"
	"github.com/gantry-dev/gantry/internal/auth"
)

// A user whose role may manage role bindings (a "binding manager" bound
// in every namespace, but granted nothing else) once bound themselves to
// cluster-admin: there was no escalation check (Kubernetes refuses a
// binding to a role with rights the binder does not hold). The same held
// for tokens: "create tokens" minted a token for any user, admin
// included. Both are refused now.
func TestRoleBindingEscalationIsRefused(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	ctx := context.Background()
	admin := ts.client(t, ts.Token)
	for _, m := range []string{
		"kind: Role\nname: binder\nrules: [{verbs: [get, list, create], resources: [rolebindings]}]\n",
	} {
		o, err := v1.DecodeManifest([]byte(m))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := admin.Apply(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	binder, _ := clusterUser(t, ts, "ops", "binder")
	z := &auth.Authorizer{Store: ts.Store}
	if err := z.Authorize(ctx, &auth.Identity{User: "ops"}, auth.Attributes{Verb: "delete", Resource: "namespaces", Name: "default"}); err == nil {
		t.Fatal("setup: ops may already delete namespaces")
	}
	o, _ := v1.DecodeManifest([]byte("kind: RoleBinding\nname: ops-root\nuser: ops\nrole: cluster-admin\nnamespace: \"*\"\n"))
	err := binder.Create(ctx, o)
	if !errors.Is(err, v1.ErrForbidden) {
		t.Errorf("binding to cluster-admin by one who holds only create rolebindings: %v; want forbidden", err)
	}
	if err == nil {
		z.Invalidate()
		err := z.Authorize(ctx, &auth.Identity{User: "ops"}, auth.Attributes{Verb: "delete", Resource: "namespaces", Name: "default"})
		t.Errorf("ops, who may only create role bindings, bound themselves to cluster-admin (may now delete namespaces: %v)", err == nil)
	}
}

func TestTokenForAnotherUserNeedsAClusterAdmin(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	ctx := context.Background()
	admin := ts.client(t, ts.Token)
	o, _ := v1.DecodeManifest([]byte("kind: Role\nname: tokens\nrules: [{verbs: [create], resources: [tokens]}]\n"))
	if _, err := admin.Apply(ctx, o); err != nil {
		t.Fatal(err)
	}
	_, tok := clusterUser(t, ts, "tm", "tokens")
	code, body := rawAs(t, ts, tok, http.MethodPost, "/api/v1/tokens", "application/json", []byte(`{"kind":"Token","spec":{"user":"admin"}}`))
	if code != http.StatusForbidden {
		t.Errorf("a user who may create tokens, making one for the cluster admin: %d %.120s; want 403", code, body)
	}
}

// clusterUser is govUser with a binding in every namespace.
func clusterUser(t *testing.T, ts *testServer, name, role string) (*client.Client, string) {
	t.Helper()
	ctx := context.Background()
	admin := ts.client(t, ts.Token)
	for _, m := range []string{
		"kind: User\nname: " + name + "\n",
		"kind: RoleBinding\nname: " + name + "-all\nuser: " + name + "\nrole: " + role + "\nnamespace: \"*\"\n",
	} {
		o, err := v1.DecodeManifest([]byte(m))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := admin.Apply(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	_, tok, err := auth.CreateToken(ctx, ts.Store, v1.TokenSpec{User: name})
	if err != nil {
		t.Fatal(err)
	}
	return ts.client(t, tok), tok
}

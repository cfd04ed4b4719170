package apiserver_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/store"
)

// Deleting the last cluster-admin binding, or the user who held it, or
// disabling that user, was accepted: nobody could manage users, roles or
// namespaces afterwards, and a start makes a new admin only on an empty
// cluster. Each is refused until another user holds cluster-admin.
func TestTheLastClusterAdminStays(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	ctx := context.Background()
	c := ts.client(t, ts.Token)
	bs, _, err := store.List[*v1.RoleBinding](ctx, ts.Store, store.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var binding, user string
	for _, b := range bs {
		if b.Spec.Role == "cluster-admin" && b.Spec.Namespace == "*" {
			binding, user = b.Metadata.Name, b.Spec.User
		}
	}
	if binding == "" {
		t.Fatal("no cluster-admin binding after bootstrap")
	}
	apply := manifestApplier(t, c)
	refused := func(what string, err error) {
		t.Helper()
		var se *v1.StatusError
		if !errors.As(err, &se) || se.Status.Code != http.StatusConflict || !strings.Contains(se.Status.Message, "would leave no enabled user with cluster-admin") {
			t.Fatalf("%s: %v; want 409 saying no cluster admin would be left", what, err)
		}
	}
	_, err = c.Delete(ctx, "RoleBinding", "", binding)
	refused("deleting the last cluster-admin binding", err)
	_, err = c.Delete(ctx, "User", "", user)
	refused("deleting the last cluster admin", err)
	refused("disabling the last cluster admin", apply("kind: User\nname: "+user+"\ndisabled: true\n"))
	refused("binding the last cluster admin to another role", apply("kind: RoleBinding\nname: "+binding+"\nuser: "+user+"\nrole: viewer\nnamespace: \"*\"\n"))
	refused("giving the last cluster-admin binding to a user who does not exist", apply("kind: RoleBinding\nname: "+binding+"\nuser: nobody\nrole: cluster-admin\nnamespace: \"*\"\n"))
	// A built-in role is not stored: deleting it is not found, whatever
	// binds it.
	if _, err := c.Delete(ctx, "Role", "", "cluster-admin"); !errors.Is(err, v1.ErrNotFound) {
		t.Fatalf("deleting the built-in cluster-admin role: %v; want not found", err)
	}

	// A cluster admin who is disabled does not count.
	if err := apply("kind: User\nname: ops\ndisabled: true\n"); err != nil {
		t.Fatal(err)
	}
	if err := apply("kind: RoleBinding\nname: ops-admin\nuser: ops\nrole: cluster-admin\nnamespace: \"*\"\n"); err != nil {
		t.Fatal(err)
	}
	_, err = c.Delete(ctx, "RoleBinding", "", binding)
	refused("deleting the last enabled cluster admin's binding", err)

	// Other users and bindings come and go as before.
	if err := apply("kind: User\nname: dev\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Delete(ctx, "User", "", "dev"); err != nil {
		t.Fatal(err)
	}
	// With another, enabled, cluster admin, one of the two goes; two
	// deletes at once cannot take both.
	if err := apply("kind: User\nname: ops\n"); err != nil {
		t.Fatal(err)
	}
	// The deletes come from a user whose rights do not hang on them.
	if err := apply("kind: Role\nname: unbinder\nrules: [{verbs: [delete], resources: [rolebindings]}]\n"); err != nil {
		t.Fatal(err)
	}
	if err := apply("kind: User\nname: ctl\n"); err != nil {
		t.Fatal(err)
	}
	if err := apply("kind: RoleBinding\nname: ctl-unbinder\nuser: ctl\nrole: unbinder\nnamespace: \"*\"\n"); err != nil {
		t.Fatal(err)
	}
	_, ctlTok, err := auth.CreateToken(ctx, ts.Store, v1.TokenSpec{User: "ctl"})
	if err != nil {
		t.Fatal(err)
	}
	ctl := ts.client(t, ctlTok)
	errs := make(chan error, 2)
	for _, b := range []string{binding, "ops-admin"} {
		go func() {
			_, err := ctl.Delete(ctx, "RoleBinding", "", b)
			errs <- err
		}()
	}
	var ok, conflict int
	for range 2 {
		switch err := <-errs; {
		case err == nil:
			ok++
		case errors.Is(err, v1.ErrConflict):
			conflict++
		default:
			t.Fatalf("concurrent delete: %v", err)
		}
	}
	if ok != 1 || conflict != 1 {
		t.Fatalf("two concurrent deletes of the last two cluster-admin bindings: %d succeeded, %d refused; want one each", ok, conflict)
	}
}

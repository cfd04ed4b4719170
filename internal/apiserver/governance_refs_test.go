package apiserver_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/client"
	"github.com/gantry-dev/gantry/internal/store"
)

// What governance objects name must exist, or a later object of that
// name inherits what was meant for nothing: a binding for a namespace
// not made yet granted its role in the namespace made later under that
// name, and a deleted Role's bindings granted a later Role of its name.
// A token of a disabled user could never be used.
func TestGovernanceReferencesMustHoldWhenWritten(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	ctx := context.Background()
	c := ts.client(t, ts.Token)
	apply := manifestApplier(t, c)
	wantStatus := func(what string, err error, code int, msg string) {
		t.Helper()
		var se *v1.StatusError
		if !errors.As(err, &se) || se.Status.Code != code || !strings.Contains(fmt.Sprint(se.Status), msg) {
			t.Fatalf("%s: %v; want %d saying %q", what, err, code, msg)
		}
	}
	if err := apply("kind: User\nname: bob\n"); err != nil {
		t.Fatal(err)
	}

	err := apply("kind: RoleBinding\nname: bob-future\nuser: bob\nrole: admin\nnamespace: future\n")
	wantStatus("a binding in a namespace that does not exist", err, http.StatusBadRequest, `namespace "future" does not exist`)
	if _, err := store.Get[*v1.RoleBinding](ctx, ts.Store, "", "bob-future"); !errors.Is(err, v1.ErrNotFound) {
		t.Fatalf("the refused binding was stored (%v)", err)
	}
	if err := apply("kind: RoleBinding\nname: bob-all\nuser: bob\nrole: viewer\nnamespace: \"*\"\n"); err != nil {
		t.Fatalf("a binding in every namespace: %v", err)
	}

	// A binding stored for a namespace since deleted keeps updating.
	stale := &v1.RoleBinding{TypeMeta: v1.TypeMeta{Kind: "RoleBinding"}, Metadata: v1.ObjectMeta{Name: "bob-gone"},
		Spec: v1.RoleBindingSpec{User: "bob", Role: "viewer", Namespace: "gone"}}
	if err := ts.Store.Create(ctx, stale); err != nil {
		t.Fatal(err)
	}
	if err := apply("kind: RoleBinding\nname: bob-gone\nuser: bob\nrole: viewer\nnamespace: gone\nlabels: {team: ops}\n"); err != nil {
		t.Fatalf("updating a binding stored before the check: %v", err)
	}

	if err := apply("kind: Role\nname: reader\nrules: [{verbs: [get], resources: [apps]}]\n"); err != nil {
		t.Fatal(err)
	}
	if err := apply("kind: RoleBinding\nname: bob-reader\nuser: bob\nrole: reader\nnamespace: default\n"); err != nil {
		t.Fatal(err)
	}
	_, err = c.Delete(ctx, "Role", "", "reader")
	wantStatus("deleting a bound role", err, http.StatusConflict, "role reader is bound by bob-reader")
	if _, err := c.Delete(ctx, "RoleBinding", "", "bob-reader"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Delete(ctx, "Role", "", "reader"); err != nil {
		t.Fatalf("deleting the role once unbound: %v", err)
	}

	if err := apply("kind: User\nname: bob\ndisabled: true\n"); err != nil {
		t.Fatal(err)
	}
	_, err = c.CreateToken(ctx, v1.TokenSpec{User: "bob"})
	wantStatus("a token for a disabled user", err, http.StatusConflict, "user bob is disabled")
}

// A Role deleted while a binding to it is written, and a namespace
// deleted while a binding in it is written, leave no binding naming
// what is gone: the check of the reference and the write are not
// interleaved with the delete.
func TestGovernanceReferencesHoldUnderConcurrentDeletes(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	ctx := context.Background()
	c := ts.client(t, ts.Token)
	apply := manifestApplier(t, c)
	if err := apply("kind: User\nname: bob\n"); err != nil {
		t.Fatal(err)
	}
	dangling := func(pred func(*v1.RoleBinding) bool) []string {
		bs, _, err := store.List[*v1.RoleBinding](ctx, ts.Store, store.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, b := range bs {
			if pred(b) {
				names = append(names, b.Metadata.Name)
			}
		}
		return names
	}
	for i := range 25 {
		role, ns := fmt.Sprintf("r%d", i), fmt.Sprintf("n%d", i)
		if err := apply("kind: Role\nname: " + role + "\nrules: [{verbs: [get], resources: [apps]}]\n"); err != nil {
			t.Fatal(err)
		}
		if err := apply("kind: Namespace\nname: " + ns + "\n"); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 4)
		go func() {
			done <- apply("kind: RoleBinding\nname: bob-" + role + "\nuser: bob\nrole: " + role + "\nnamespace: default\n")
		}()
		go func() {
			_, err := c.Delete(ctx, "Role", "", role)
			done <- err
		}()
		go func() {
			done <- apply("kind: RoleBinding\nname: bob-" + ns + "\nuser: bob\nrole: viewer\nnamespace: " + ns + "\n")
		}()
		go func() {
			_, err := c.Delete(ctx, "Namespace", "", ns)
			done <- err
		}()
		for range 4 {
			// Either side may be refused (a bound role, a missing
			// role or namespace); what is stored afterwards must hold.
			<-done
		}
		if _, err := store.Get[*v1.Role](ctx, ts.Store, "", role); errors.Is(err, v1.ErrNotFound) {
			if names := dangling(func(b *v1.RoleBinding) bool { return b.Spec.Role == role }); len(names) > 0 {
				t.Fatalf("round %d: role %s was deleted, but bindings %v still name it", i, role, names)
			}
		}
	}
	// Namespaces go in the background once marked: wait for the deletes,
	// then no binding may name a namespace that is gone.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var gone []string
		for i := range 25 {
			ns := fmt.Sprintf("n%d", i)
			if _, err := store.Get[*v1.Namespace](ctx, ts.Store, "", ns); errors.Is(err, v1.ErrNotFound) {
				gone = append(gone, dangling(func(b *v1.RoleBinding) bool { return b.Spec.Namespace == ns })...)
			}
		}
		if len(gone) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bindings %v name namespaces that were deleted", gone)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// manifestApplier returns a function that applies one manifest through c.
func manifestApplier(t *testing.T, c *client.Client) func(manifest string) error {
	return func(m string) error {
		o, err := v1.DecodeManifest([]byte(m))
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Apply(context.Background(), o)
		return err
	}
}

package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/client"
)

// delete -f refuses a manifest whose namespace contradicts an explicit
// -n, as apply and diff do, rather than deleting in the manifest's.
func TestDeleteRefusesANamespaceClash(t *testing.T) {
	rs := startRolloutServer(t)
	ctx := context.Background()
	if err := rs.c.Create(ctx, &v1.Namespace{TypeMeta: v1.TypeMeta{Kind: "Namespace"}, Metadata: v1.ObjectMeta{Name: "prod"}}); err != nil {
		t.Fatal(err)
	}
	o, _ := v1.DecodeManifest([]byte("kind: App\nname: web\nnamespace: prod\nimage: web:v1\n"))
	if _, err := rs.c.Apply(ctx, o); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "web.yaml")
	os.WriteFile(p, []byte("kind: App\nname: web\nnamespace: prod\nimage: web:v1\n"), 0o644)
	out, err, _ := rs.run(t, 20*time.Second, "-n", "default", "delete", "-f", p)
	if err == nil || !strings.Contains(err.Error(), `but -n says "default"`) {
		t.Errorf("delete -n default -f (manifest in prod): err=%v out=%q; want the clash named", err, out)
	}
	if _, gerr := client.Get[*v1.App](ctx, rs.c, "prod", "web"); gerr != nil {
		t.Errorf("prod's app/web was deleted: %v", gerr)
	}
}

// delete takes several names (KIND NAME NAME, or KIND/NAME KIND/NAME),
// as kubectl does: before, only the first went and the rest were ignored.
func TestDeleteSeveralNames(t *testing.T) {
	rs := startRolloutServer(t)
	ctx := context.Background()
	for _, n := range []string{"a", "b", "c", "d"} {
		applyRolloutApp(t, rs, n, "web:v1")
	}
	if out, err, _ := rs.run(t, 20*time.Second, "delete", "app", "a", "b"); err != nil {
		t.Fatalf("delete app a b: %v %s", err, out)
	}
	if out, err, _ := rs.run(t, 20*time.Second, "delete", "app/c", "app/d"); err != nil {
		t.Fatalf("delete app/c app/d: %v %s", err, out)
	}
	for _, n := range []string{"a", "b", "c", "d"} {
		if _, err := client.Get[*v1.App](ctx, rs.c, "default", n); !errors.Is(err, v1.ErrNotFound) {
			t.Errorf("app %s: %v; want deleted", n, err)
		}
	}
	if _, err, _ := rs.run(t, 20*time.Second, "delete", "app/x", "y"); err == nil {
		t.Errorf("delete app/x y: no error; want every object as KIND/NAME")
	}
}

// role bind names the binding USER-ROLE-NAMESPACE while it fits a name
// and is not another binding's; otherwise it cuts it and adds a hash,
// rather than failing on a field the user never wrote or overwriting
// another user's binding.
func TestRoleBindNames(t *testing.T) {
	rs := startRolloutServer(t)
	ctx := context.Background()
	for _, u := range []string{"jonathan-smith-platform-team", "a-b", "a"} {
		if err := rs.c.Create(ctx, &v1.User{TypeMeta: v1.TypeMeta{Kind: "User"}, Metadata: v1.ObjectMeta{Name: u}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := rs.c.Create(ctx, &v1.Role{TypeMeta: v1.TypeMeta{Kind: "Role"}, Metadata: v1.ObjectMeta{Name: "b-viewer"},
		Spec: v1.RoleSpec{Rules: []v1.Rule{{Verbs: []string{"get"}, Resources: []string{"apps"}}}}}); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{"payments-production-eu-west", "team"} {
		if err := rs.c.Create(ctx, &v1.Namespace{TypeMeta: v1.TypeMeta{Kind: "Namespace"}, Metadata: v1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}
	if out, err, _ := rs.run(t, 20*time.Second, "-n", "payments-production-eu-west", "role", "bind", "jonathan-smith-platform-team", "developer"); err != nil {
		t.Errorf("role bind with a long user and namespace: %v %s", err, out)
	}
	if out, err, _ := rs.run(t, 20*time.Second, "-n", "team", "role", "bind", "a-b", "viewer"); err != nil {
		t.Fatalf("role bind a-b viewer: %v %s", err, out)
	}
	if out, err, _ := rs.run(t, 20*time.Second, "-n", "team", "role", "bind", "a", "b-viewer"); err != nil {
		t.Fatalf("role bind a b-viewer: %v %s", err, out)
	}
	bs, _, err := client.List[*v1.RoleBinding](ctx, rs.c, "", client.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, b := range bs {
		found[b.Spec.User+" "+b.Spec.Role+" "+b.Spec.Namespace] = true
	}
	for _, want := range []string{"jonathan-smith-platform-team developer payments-production-eu-west", "a-b viewer team", "a b-viewer team"} {
		if !found[want] {
			t.Errorf("no binding %q among %v", want, found)
		}
	}
}

// token create --expires refuses a lifetime that is not positive: a
// negative one made a token that never expired.
func TestTokenCreateRefusesANonPositiveLifetime(t *testing.T) {
	rs := startRolloutServer(t)
	for _, d := range []string{"-1h", "0s"} {
		if out, err, _ := rs.run(t, 20*time.Second, "token", "create", "--expires", d); err == nil || !strings.Contains(err.Error(), "give a lifetime") {
			t.Errorf("token create --expires %s: %v %s; want a refusal", d, err, out)
		}
	}
	// Under a second was refused by the server naming spec.expires, a
	// field the user never typed.
	if out, err, _ := rs.run(t, 20*time.Second, "token", "create", "--expires", "1ms"); err == nil || !strings.Contains(err.Error(), "--expires 1ms: give at least 1s") {
		t.Errorf("token create --expires 1ms: %v %s; want a refusal naming the flag", err, out)
	}
}

// A bad name was reported as "metadata.name: …", a field the user never
// typed; the CLI names what it is.
func TestUserAndSecretNamesAreNamedInErrors(t *testing.T) {
	rs := startRolloutServer(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"user", "create", "Alice"}, `user name "Alice": it must be a DNS-1123 label`},
		{[]string{"secret", "set", "Bad_Name", "k=v"}, `secret name "Bad_Name": it must be a DNS-1123 label`},
	} {
		if out, err, _ := rs.run(t, 20*time.Second, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v %s; want %q", strings.Join(tc.args, " "), err, out, tc.want)
		}
	}
}

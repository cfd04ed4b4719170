package main

import (
	"context"
	"strings"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// role ls -n team and get rolebindings -n team showed every binding: -n
// was ignored for these cluster objects, which name their namespace
// (review helper-166). They show the bindings that grant in team.
func TestRoleBindingsListsHonourTheNamespace(t *testing.T) {
	rs := startRolloutServer(t)
	for _, b := range []struct{ name, ns string }{{"alice-team", "team"}, {"bob-other", "other"}, {"root-all", "*"}} {
		rb := &v1.RoleBinding{TypeMeta: v1.TypeMeta{Kind: "RoleBinding"}, Metadata: v1.ObjectMeta{Name: b.name},
			Spec: v1.RoleBindingSpec{User: "u", Role: "viewer", Namespace: b.ns}}
		if err := rs.st.Create(context.Background(), rb); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{
		{"role", "ls", "-n", "team", "-o", "name"},
		{"get", "rolebindings", "-n", "team", "-o", "name"},
	} {
		out, err, _ := rs.run(t, 5*time.Second, args...)
		if err != nil || !strings.Contains(out, "alice-team") || !strings.Contains(out, "root-all") || strings.Contains(out, "bob-other") {
			t.Errorf("%q: %v\n%s; want the bindings of team and of every namespace only", args, err, out)
		}
	}
	if out, _, _ := rs.run(t, 5*time.Second, "role", "ls", "-o", "name"); !strings.Contains(out, "bob-other") {
		t.Errorf("role ls without -n left out a binding:\n%s", out)
	}
}

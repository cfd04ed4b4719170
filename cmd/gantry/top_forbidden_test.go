package main

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// top printed "-" in every metrics column and exited 0 for a user who
// may list apps but not read their metrics, the same as "no sample yet"
// (review helper-166). The refusal is the answer now.
func TestTopSaysWhenMetricsAreForbidden(t *testing.T) {
	rs := startRolloutServer(t)
	applyRolloutApp(t, rs, "web", "web:v1")
	role := &v1.Role{TypeMeta: v1.TypeMeta{Kind: "Role"}, Metadata: v1.ObjectMeta{Name: "lister"},
		Spec: v1.RoleSpec{Rules: []v1.Rule{{Verbs: []string{"list", "get"}, Resources: []string{"apps"}}}}}
	if _, err := rs.c.Apply(context.Background(), role); err != nil {
		t.Fatal(err)
	}
	out, err, _ := rs.run(t, 10*time.Second, "user", "create", "bob", "--role", "lister", "-n", "default", "--issue-token")
	if err != nil {
		t.Fatalf("user create: %v\n%s", err, out)
	}
	token := regexp.MustCompile(`gtk_[a-z0-9]+_[a-z0-9]+`).FindString(out)
	if token == "" {
		t.Fatalf("no token in %q", out)
	}
	bob := &rolloutServer{url: rs.url, token: token, st: rs.st}
	out, err, _ = bob.run(t, 10*time.Second, "top", "apps")
	if err == nil || !strings.Contains(err.Error(), "metrics") {
		t.Errorf("top apps without the right to read metrics: %v\n%s; want the refusal", err, out)
	}
}

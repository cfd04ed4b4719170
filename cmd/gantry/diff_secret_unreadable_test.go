package main

import (
	"context"
	"strings"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/auth"
)

// The server answers "configured" to any apply of a secret by a user who
// may not read its values (so that the answer tells no guess right), and
// gantry diff took that for a change of the values: for such a user it
// reported an unchanged secret as "would be configured" and exited 1 on
// every run. It now says that the values were not compared, and compares
// the secret's keys and metadata only.
func TestDiffOfUnreadableSecretComparesAllButItsValues(t *testing.T) {
	rs, write := startDiffServer(t)
	one := write("one.yaml", "kind: Secret\nname: db\nstringData: {password: hunter-one}\n")
	two := write("two.yaml", "kind: Secret\nname: db\nstringData: {password: hunter-two}\n")
	labelled := write("labelled.yaml", "kind: Secret\nname: db\nlabels: {tier: data}\nstringData: {password: hunter-one}\n")
	if _, err, _ := rs.run(t, 20*time.Second, "apply", "-f", one); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, m := range []string{"kind: User\nname: dev\n", "kind: RoleBinding\nname: dev-default\nuser: dev\nrole: developer\nnamespace: default\n"} {
		o, err := v1.DecodeManifest([]byte(m))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rs.c.Apply(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	_, tok, err := auth.CreateToken(ctx, rs.st, v1.TokenSpec{User: "dev"})
	if err != nil {
		t.Fatal(err)
	}
	dev := *rs
	dev.token = tok

	// Unchanged, and as unknowable to dev as a new value: no change, and
	// said so.
	for _, f := range []string{one, two} {
		out, err, _ := dev.run(t, 20*time.Second, "diff", "-f", f)
		if code := exitCode(err); code != 0 {
			t.Errorf("a developer's diff of %s: exit %d (%v); want 0:\n%s", f, code, err, out)
		}
		if strings.Contains(out, "would be configured") || !strings.Contains(out, "secret/db: values not compared: you may not read them") {
			t.Errorf("a developer's diff of %s does not say that the values were not compared:\n%s", f, out)
		}
		if strings.Contains(out, "hunter") {
			t.Errorf("diff shows a secret value:\n%s", out)
		}
	}
	// What dev may see is still compared.
	out, err, _ := dev.run(t, 20*time.Second, "diff", "-f", labelled)
	if code := exitCode(err); code != 1 || !strings.Contains(out, "+    tier: data") {
		t.Errorf("a developer's diff of a new label: exit %d (%v); want 1 and the label in the diff:\n%s", code, err, out)
	}
}

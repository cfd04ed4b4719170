package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/client"
)

func TestApplyBadInvocations(t *testing.T) {
	rs := startRolloutServer(t)
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	empty := write("empty.yaml", "# nothing here\n---\n")
	team := write("team.yaml", "kind: App\nname: web\nnamespace: team\nimage: web:v1\n")
	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"apply", "-f", empty}, "no objects in " + empty},
		{[]string{"-n", "default", "apply", "-f", team}, `app/web is in namespace "team", but -n says "default"`},
		{[]string{"rollout", "status", "app/web", "--timeout", "-1s"}, "give a positive duration"},
	} {
		out, err, _ := rs.run(t, 20*time.Second, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%q: err %v (out %q); want an error saying %q", strings.Join(tc.args, " "), err, out, tc.says)
		}
	}
	// Nothing was applied, in either namespace.
	for _, ns := range []string{"default", "team"} {
		if _, err := client.Get[*v1.App](context.Background(), rs.c, ns, "web"); err == nil {
			t.Errorf("app web exists in namespace %s after the refused apply", ns)
		}
	}
}

// A timeout that ends before the first read is still a timeout, said
// as one.
func TestRolloutStatusTimeoutIsSaidAsSuch(t *testing.T) {
	rs := startRolloutServer(t)
	applyRolloutApp(t, rs, "hello", "hello:v1")
	_, err, _ := rs.run(t, 20*time.Second, "rollout", "status", "app/hello", "--timeout", "1ns")
	if err == nil || !strings.Contains(err.Error(), "timed out after 1ns waiting for app/hello") {
		t.Fatalf("err %v; want a timeout message", err)
	}
}

func TestPauseAndResumeSayWhenThereWasNothingToDo(t *testing.T) {
	rs := startRolloutServer(t)
	applyRolloutApp(t, rs, "hello", "hello:v1")
	for _, step := range []struct{ verb, says string }{
		{"pause", "app/hello paused"},
		{"pause", "app/hello was already paused"},
		{"resume", "app/hello resumed"},
		{"resume", "app/hello was not paused"},
	} {
		out, err, _ := rs.run(t, 20*time.Second, "rollout", step.verb, "app/hello")
		if err != nil || strings.TrimSpace(out) != step.says {
			t.Errorf("rollout %s: %q, %v; want %q", step.verb, out, err, step.says)
		}
	}
}

// A manifest that names namespace default is as explicit as any other:
// -n cannot move it elsewhere without a word.
func TestApplyRefusesMovingAnExplicitDefaultNamespace(t *testing.T) {
	rs := startRolloutServer(t)
	p := filepath.Join(t.TempDir(), "web.yaml")
	if err := os.WriteFile(p, []byte("kind: App\nname: web\nnamespace: default\nimage: web:v1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err, _ := rs.run(t, 20*time.Second, "-n", "team", "apply", "-f", p)
	if err == nil || !strings.Contains(err.Error(), `app/web is in namespace "default", but -n says "team"`) {
		t.Fatalf("err %v; want the clash named", err)
	}
}

// apply -f applied documents in file order: an App listed before its
// Namespace, or a binding before its Role, failed with a message to
// create what the same run then created. They are applied in dependency
// order (file order within a kind), and delete -f goes the other way.
func TestApplyAppliesWhatObjectsNameFirst(t *testing.T) {
	rs := startRolloutServer(t)
	p := filepath.Join(t.TempDir(), "all.yaml")
	docs := strings.Join([]string{
		"kind: AlertRule\nname: down\nnamespace: team\ncondition: not-ready\nnotifiers: [chat]\n",
		"kind: App\nname: web\nnamespace: team\nimage: web:v1\n",
		"kind: RoleBinding\nname: bob-ops\nuser: bob\nrole: ops\nnamespace: team\n",
		"kind: Notifier\nname: chat\nnamespace: team\ntype: webhook\nurl: https://hooks.example.com/x\n",
		"kind: Role\nname: ops\nrules: [{verbs: [get], resources: [apps]}]\n",
		"kind: User\nname: bob\n",
		"kind: Namespace\nname: team\n",
	}, "---\n")
	if err := os.WriteFile(p, []byte(docs), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err, _ := rs.run(t, 20*time.Second, "apply", "-f", p)
	if err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	want := []string{"namespace/team created", "role/ops created", "user/bob created", "rolebinding/bob-ops created",
		"notifier/chat created", "alertrule/down created", "app/web created"}
	got := strings.Split(strings.TrimSpace(out), "\n")
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("apply printed\n%s\nwant, in this order,\n%s", out, strings.Join(want, "\n"))
	}
	out, err, _ = rs.run(t, 20*time.Second, "delete", "-f", p)
	if err != nil {
		t.Fatalf("delete -f: %v\n%s", err, out)
	}
	if !strings.HasSuffix(strings.TrimSpace(out), "namespace/team deleted") {
		t.Fatalf("delete -f printed\n%s\nwant the namespace last", out)
	}
}

// A server dry run stores nothing, so a file whose objects need the ones
// before them (a namespace and what goes in it, a role and its binding, a
// notifier and the rule that names it) failed its dry run, or warned,
// though applying it works. The objects that need one the dry run would
// create are said to be unchecked, warnings that only say such an object
// is missing are left out, and a real problem is still reported.
func TestApplyDryRunOfObjectsThatNeedEachOther(t *testing.T) {
	rs := startRolloutServer(t)
	dir := t.TempDir()
	p := filepath.Join(dir, "team.yaml")
	doc := `kind: Namespace
name: team-new
---
kind: App
name: web
namespace: team-new
image: web:v1
---
kind: Role
name: deployer
rules: [{verbs: [get], resources: [apps]}]
---
kind: User
name: dana
---
kind: RoleBinding
name: dana-deployer
user: dana
role: deployer
namespace: default
---
kind: Notifier
name: chat
type: webhook
url: https://hooks.example.com/x
events: [alerts]
---
kind: AlertRule
name: crashes
condition: restarts
threshold: 3
window: 5m
notifiers: [chat]
`
	if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err, _ := rs.run(t, 20*time.Second, "apply", "-f", p, "--dry-run")
	if err != nil {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	for _, want := range []string{
		"namespace/team-new created (server dry run)",
		"app/web not checked by the server (server dry run): it needs namespace/team-new",
		"rolebinding/dana-deployer not checked by the server (server dry run): it needs role/deployer",
		"notifier/chat created (server dry run)",
		"alertrule/crashes created (server dry run)",
		"2 of 7 objects could not be checked",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "Warning:") {
		t.Errorf("a warning about an object the dry run creates:\n%s", out)
	}
	// Nothing was stored.
	if _, err := client.Get[*v1.Namespace](context.Background(), rs.c, "", "team-new"); err == nil {
		t.Error("the dry run created namespace team-new")
	}
	// A notifier that the file does not create is still warned about.
	q := filepath.Join(dir, "rule.yaml")
	if err := os.WriteFile(q, []byte("kind: AlertRule\nname: crashes\ncondition: restarts\nthreshold: 3\nwindow: 5m\nnotifiers: [nobody]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err, _ = rs.run(t, 20*time.Second, "apply", "-f", q, "--dry-run")
	if err != nil || !strings.Contains(out, `Warning: alertrule/crashes names notifier "nobody"`) {
		t.Errorf("dry run of a rule naming a missing notifier: %v\n%s", err, out)
	}
}

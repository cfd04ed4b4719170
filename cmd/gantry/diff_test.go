package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// gantry diff of a secret never prints its values: not the live ones,
// which never leave the server, and not the manifest's either, which
// would land in a CI log. A secret as applied shows no change; one whose
// values change is named below the diff.
func TestDiffOfSecretShowsNoValues(t *testing.T) {
	rs, write := startDiffServer(t)
	one := write("one.yaml", "kind: Secret\nname: db\nstringData: {password: hunter-one}\n")
	two := write("two.yaml", "kind: Secret\nname: db\nstringData: {password: hunter-two}\n")
	if _, err, _ := rs.run(t, 20*time.Second, "apply", "-f", one); err != nil {
		t.Fatal(err)
	}
	out, err, _ := rs.run(t, 20*time.Second, "diff", "-f", one)
	if err != nil || out != "" {
		t.Errorf("diff of the secret as applied: err=%v; want exit 0 and no output:\n%s", err, out)
	}
	out, err, _ = rs.run(t, 20*time.Second, "diff", "-f", two)
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != 1 {
		t.Errorf("diff of a secret's new value: err=%v; want exit status 1", err)
	}
	if strings.Contains(out, "hunter") {
		t.Errorf("diff shows a secret value:\n%s", out)
	}
	if !strings.Contains(out, "secret/db would be configured") {
		t.Errorf("diff does not name the changed secret:\n%s", out)
	}
}

// startDiffServer starts an API server for tests of gantry diff (skipped
// without diff(1)), and returns it with a function that writes a
// manifest into a temporary directory and returns its path.
func startDiffServer(t *testing.T) (*rolloutServer, func(name, doc string) string) {
	t.Helper()
	if _, err := exec.LookPath("diff"); err != nil {
		t.Skip("diff (diffutils) is not installed")
	}
	dir := t.TempDir()
	return startRolloutServer(t), func(name, doc string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
}

// A diff of manifests that create a namespace and what goes in it failed
// (the server's dry run of the App found no namespace) and depended on
// the file's order. The objects go in apply's order, and one that needs
// an object the same manifests create is shown as written.
func TestDiffOfANewNamespaceAndItsContents(t *testing.T) {
	rs, write := startDiffServer(t)
	p := write("team.yaml", "kind: App\nname: web\nnamespace: team-diff\nimage: web:v1\n---\nkind: Namespace\nname: team-diff\n")
	out, err, _ := rs.run(t, 20*time.Second, "diff", "-f", p)
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != 1 {
		t.Fatalf("diff: err=%v; want exit status 1 (changes):\n%s", err, out)
	}
	for _, want := range []string{
		"app/web: shown as written, not checked by the server: it needs namespace/team-diff",
		"  name: team-diff",
		"image: web:v1",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A manifest lists a namespace before what goes in it (apply needs that
// order). delete -f of the file it applied deleted the namespace first,
// which took its objects along, and then failed on each of them ("not
// found"), exiting 1 although everything the file names was gone. It
// deletes in reverse order now.
func TestDeleteOfAnAppliedStackSucceeds(t *testing.T) {
	rs := startRolloutServer(t)
	stack := filepath.Join(t.TempDir(), "stack.yaml")
	os.WriteFile(stack, []byte("kind: Namespace\nname: team2\n---\nkind: App\nname: web\nnamespace: team2\nimage: web:v1\n---\nkind: Secret\nname: db\nnamespace: team2\nstringData: {a: b}\n"), 0o644)
	if out, err, _ := rs.run(t, 10*time.Second, "apply", "-f", stack); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	out, err, _ := rs.run(t, 10*time.Second, "delete", "-f", stack)
	if code := exitCode(err); code != 0 {
		t.Errorf("delete -f of the stack it applied: exit %d, printed:\n%s", code, out)
	}
}

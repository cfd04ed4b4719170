package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// delete -f needs only what a document names: an App whose file no
// longer validates (edited, or written for another version) is still
// deleted, while a document that names nothing is an error.
func TestDeleteByFileThatNoLongerValidates(t *testing.T) {
	rs := startRolloutServer(t)
	f := filepath.Join(t.TempDir(), "web.yaml")
	os.WriteFile(f, []byte("kind: App\nname: web\nimage: web:v1\n"), 0o644)
	if out, err, _ := rs.run(t, 10*time.Second, "apply", "-f", f); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	os.WriteFile(f, []byte("kind: App\nname: web\nimage: web:v1\nreplicas: -3\nnoSuchField: 1\n"), 0o644)
	out, err, _ := rs.run(t, 10*time.Second, "delete", "-f", f)
	if err != nil || !strings.Contains(out, "app/web deleted") {
		t.Fatalf("delete -f of an invalid manifest: %v\n%s", err, out)
	}

	os.WriteFile(f, []byte("name: web\nimage: web:v1\n"), 0o644)
	out, err, _ = rs.run(t, 10*time.Second, "delete", "-f", f)
	if err == nil || !strings.Contains(err.Error(), "kind is required") {
		t.Errorf("delete -f of a document without a kind: %v\n%s", err, out)
	}
}

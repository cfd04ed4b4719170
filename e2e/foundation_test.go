package e2e

import (
	"context"
	"strings"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/client"
)

// TestFoundation walks the issue-2 tour on a real gantry up: apply, get,
// restart with the state kept, a new revision on a template change, and
// an invalid manifest that stores nothing.
func TestFoundation(t *testing.T) {
	c := StartCluster(t, ClusterOptions{})
	c.Push(BusyboxImage(t), "library/busybox:latest")
	out := c.MustGantry("", "apply", "-f", "../examples/hello.yaml")
	if strings.TrimSpace(out) != "app/hello created" {
		t.Fatalf("apply printed %q", out)
	}
	if out := c.MustGantry("", "apply", "-f", "../examples/hello.yaml"); strings.TrimSpace(out) != "app/hello unchanged" {
		t.Fatalf("second apply printed %q", out)
	}
	out = c.MustGantry("", "get", "apps")
	if !strings.Contains(out, "hello") || !strings.Contains(out, "REVISION") {
		t.Fatalf("get apps:\n%s", out)
	}
	before, err := client.Get[*v1.App](context.Background(), c.Client, "default", "hello")
	if err != nil {
		t.Fatal(err)
	}

	c.Stop()
	c.Restart()
	after, err := client.Get[*v1.App](context.Background(), c.Client, "default", "hello")
	if err != nil {
		t.Fatalf("after restart: %v", err)
	}
	if after.Status.Revision != before.Status.Revision || after.Metadata.UID != before.Metadata.UID {
		t.Fatalf("after restart: revision %d uid %s, before %d %s", after.Status.Revision, after.Metadata.UID, before.Status.Revision, before.Metadata.UID)
	}

	manifest := strings.Replace(readFile(t, "../examples/hello.yaml"), "GREETING: hi", "GREETING: hello-v2", 1)
	if out := c.MustGantry(manifest, "apply", "-f", "-"); strings.TrimSpace(out) != "app/hello configured" {
		t.Fatalf("apply v2 printed %q", out)
	}
	hist := c.MustGantry("", "rollout", "history", "app/hello")
	if !strings.Contains(hist, "\n1 ") || !strings.Contains(hist, "2 (current)") {
		t.Fatalf("rollout history does not list revisions 1 and 2:\n%s", hist)
	}

	bad := "kind: App\nname: Bad_Name\nimage: \"\"\nreplicas: -1\nports: [{port: 70000}]\n---\nkind: App\nname: fine\nimage: x:v1\n"
	_, errOut, code := c.Gantry(bad, "apply", "-f", "-")
	if code != 1 {
		t.Fatalf("invalid manifest: exit %d, want 1", code)
	}
	for _, want := range []string{"metadata.name", "spec.image: is required", "spec.replicas", "spec.ports[0].port: must be 1-65535"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("error output does not mention %q:\n%s", want, errOut)
		}
	}
	if _, err := client.Get[*v1.App](context.Background(), c.Client, "default", "fine"); err == nil {
		t.Fatal("a valid document next to an invalid one was applied; nothing may be stored")
	}
}

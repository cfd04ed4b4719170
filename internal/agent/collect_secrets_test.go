package agent

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// The sweep of files of instances that are gone (an agent stopped between
// removing a container and deleting its files, the Instance deleted
// meanwhile) removed their instance directories but not their secret
// files, which stayed on the node's tmpfs until it rebooted.
func TestCollectRemovesTheSecretFilesOfGoneInstances(t *testing.T) {
	a := agentWithAPI(t, &listRuntime{}, &flakyAPI{})
	a.net = &resyncNet{}
	id := containerID("default/web-1")
	for _, d := range []string{a.instanceDir(id), a.secretDir(id)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(a.secretDir(id), "0"), []byte("hunter2"), 0o400); err != nil {
		t.Fatal(err)
	}
	a.collect(context.Background(), map[string]bool{})
	if _, err := os.Stat(a.instanceDir(id)); err == nil {
		t.Fatalf("instance dir kept (test setup wrong)")
	}
	if _, err := os.Stat(filepath.Join(a.secretDir(id), "0")); err == nil {
		t.Fatalf("secret file of a gone instance left on the node after collect")
	}
}

package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Logging in to another server once kept the old server's registry (and
// CA and namespace) in the config: image push then went to the old
// cluster's registry, with the new cluster's token. They are dropped now.
func TestLoginToAnotherServerForgetsTheOldOnesRegistry(t *testing.T) {
	rs := startRolloutServer(t)
	path := filepath.Join(t.TempDir(), "config")
	if err := saveConfig(path, &CLIConfig{Server: "https://old.example:7443", Token: "gtk_old", Registry: "old.example:5000", Namespace: "oldteam"}); err != nil {
		t.Fatal(err)
	}
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"--config", path, "login", "--server", rs.url, "--token", rs.token})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := root.ExecuteContext(ctx); err != nil {
		t.Fatal(err)
	}
	c, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if c.Registry == "old.example:5000" {
		t.Errorf("after login to %s the config still names the old registry:\n%s", rs.url, b)
	}
}

package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
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

// A config file named with --config that does not exist, and no server
// given otherwise: the error names the file (a typo), rather than saying
// to start a server.
func TestMissingNamedConfigIsNamed(t *testing.T) {
	t.Setenv("GANTRY_SERVER", "")
	t.Setenv("GANTRY_TOKEN", "")
	missing := filepath.Join(t.TempDir(), "typo")
	root := newRootCmd()
	var out strings.Builder
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"--config", missing, "get", "apps"})
	err := root.ExecuteContext(context.Background())
	if err == nil || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("get apps with --config %s: %v; want an error naming the missing file", missing, err)
	}
}

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

// login judged "another server" by the text of the URL, case and all,
// while every other command goes by sameServer: a login to the server the
// config names, typed with other capitals, dropped its registry and
// namespace and asked for --token. It is the same server now.
func TestLoginToTheSameServerInOtherCapitalsKeepsTheConfig(t *testing.T) {
	t.Setenv("GANTRY_SERVER", "")
	t.Setenv("GANTRY_TOKEN", "")
	rs := startRolloutServer(t)
	path := filepath.Join(t.TempDir(), "config")
	saved := strings.Replace(rs.url, "http://", "HTTP://", 1) + "/"
	if err := saveConfig(path, &CLIConfig{Server: saved, Token: rs.token, Registry: "reg.example:5000", Namespace: "team"}); err != nil {
		t.Fatal(err)
	}
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"--config", path, "login", "--server", rs.url})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := root.ExecuteContext(ctx); err != nil {
		t.Fatalf("login --server %s with %s saved: %v\n%s", rs.url, saved, err, out.String())
	}
	c, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.Registry != "reg.example:5000" || c.Namespace != "team" {
		t.Errorf("after login to the same server the config lost its registry or namespace: %+v", c)
	}
}

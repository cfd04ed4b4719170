package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// `gantry image build DIR -f FILE` with a FILE that does not exist says
// so, rather than reporting DIR has no Dockerfile or building DIR's Go
// package instead.
func TestBuildNamesAMissingDockerfile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(cfg, []byte("server: https://127.0.0.1:1\nregistry: 127.0.0.1:1\ntoken: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"--config", cfg, "image", "build", dir, "-f", "Dockerfile.prod", "-t", "x:v1"})
	err := root.Execute()
	if err == nil || !strings.Contains(err.Error(), "Dockerfile.prod") {
		t.Fatalf("got %v; want an error naming the missing Dockerfile.prod", err)
	}
}

// `--build-arg NAME` without =VALUE passes NAME from the environment, as
// docker build does, and leaves the ARG's default alone when NAME is not
// set there.
func TestBuildArgWithoutValueComesFromTheEnvironment(t *testing.T) {
	dir := t.TempDir()
	df := "FROM scratch\nARG FROM_ENV=default\nARG UNSET=default\nENV FROM_ENV=$FROM_ENV UNSET=$UNSET\n"
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("FROM_ENV", "from-env")
	os.Unsetenv("UNSET")
	root := newRootCmd()
	root.SetErr(&bytes.Buffer{})
	img, err := buildDockerfile(t.Context(), root, &globals{}, &imageEnv{}, dir,
		&buildFlags{args: []string{"FROM_ENV", "UNSET"}, dataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	env := strings.Join(cf.Config.Env, " ")
	if !strings.Contains(env, "FROM_ENV=from-env") || !strings.Contains(env, "UNSET=default") {
		t.Errorf("env = %s; want FROM_ENV=from-env and UNSET=default", env)
	}
}

package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

// A pid file left by a gantry that died without its defers (a panic in a
// goroutine, the OOM killer, kill -9) names a pid that a restarted gantry
// can get again: in a container, gantry up is pid 1 on every start. The
// pid file then named the process reading it, and gantry up refused to
// start forever ("another gantry up runs"); gantry down refused too.
func TestPidFileNamingThisProcessIsNotAnotherGantry(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gantry.pid")
	if err := os.WriteFile(path, []byte(fmt.Sprintf("%d\n", os.Getpid())), 0o600); err != nil {
		t.Fatal(err)
	}
	// This test binary (gantry.test) is the gantry up that just started.
	if pidAlive(path) {
		t.Fatalf("pidAlive(%s) with our own pid %d: true; gantry up would refuse to start, taking its own pid for another gantry", path, os.Getpid())
	}
}

// The same, seen from gantry down: after gantry up crashed, the stale pid
// file happens to name the down process itself, and down refuses with
// "gantry up is still running".
func TestDownDoesNotTakeItselfForARunningUp(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "gantry.pid"), []byte(fmt.Sprintf("%d\n", os.Getpid())), 0o600)
	cmd := newDownCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs([]string{"--data-dir", dir})
	if err := cmd.Execute(); err != nil {
		t.Fatalf("down with a stale pid file naming the down process itself: %v", err)
	}
}

// ~/.gantry as a symlink to a bigger disk (a common move for image
// stores): gantry up follows it (filepath.Abs keeps the link), but
// gantry down --purge removed only the link, and said nothing: etcd, the
// CA, images and logs stayed on the disk, and the next gantry up started
// an empty cluster in a new ~/.gantry.
func TestDownPurgeOfSymlinkedDataDirRemovesTheData(t *testing.T) {
	base := t.TempDir()
	real := filepath.Join(base, "bigdisk", "gantry")
	if err := os.MkdirAll(filepath.Join(real, "etcd"), 0o700); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(real, "admin-token"), []byte("gtk_x\n"), 0o600)
	link := filepath.Join(base, "home", ".gantry")
	os.MkdirAll(filepath.Dir(link), 0o700)
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	cmd := newDownCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs([]string{"--data-dir", link, "--purge"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(real, "admin-token")); err == nil {
		t.Fatalf("down --purge --data-dir %s (a symlink to %s) said %q, but the data is still there", link, real, strings.TrimSpace(out.String()))
	}
}

// --purge deleted whatever directory --data-dir (or GANTRY_HOME) named,
// without checking that it was a Gantry data directory: GANTRY_HOME=$HOME
// (read as "the parent of .gantry"), or a --data-dir typo, and down
// --purge wiped it. Here: a directory with no trace of Gantry in it.
func TestDownPurgeRefusesADirectoryThatIsNotGantrys(t *testing.T) {
	home := t.TempDir()
	os.WriteFile(filepath.Join(home, "thesis.tex"), []byte("years of work"), 0o600)
	t.Setenv("GANTRY_HOME", home)
	_, err := downPurge()
	if _, statErr := os.Stat(filepath.Join(home, "thesis.tex")); statErr != nil {
		t.Fatalf("down --purge with GANTRY_HOME=%s (no Gantry state in it): %v, and thesis.tex is gone", home, err)
	}
}

// `gantry login --server B` without --token sent the token the config
// held for server A to B (whoami), although login dropped A's CA, registry
// and namespace for another server. B, any host the user typed, got
// cluster A's admin token. It is refused now, naming --token.
func TestLoginToAnotherServerDoesNotSendTheOldToken(t *testing.T) {
	t.Setenv("GANTRY_SERVER", "")
	t.Setenv("GANTRY_TOKEN", "")
	var mu sync.Mutex
	var seen []string
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("Authorization"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"kind":"Status","code":401,"reason":"Unauthorized","message":"bad token"}`))
	}))
	defer b.Close()
	path := filepath.Join(t.TempDir(), "config")
	if err := saveConfig(path, &CLIConfig{Server: "https://a.example:7443", Token: "gtk_cluster_a_admin"}); err != nil {
		t.Fatal(err)
	}
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"--config", path, "login", "--server", b.URL})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := root.ExecuteContext(ctx)
	mu.Lock()
	defer mu.Unlock()
	for _, a := range seen {
		if strings.Contains(a, "gtk_cluster_a_admin") {
			t.Fatalf("login --server %s (no --token): %v; the new server got the old cluster's token (Authorization: %s)", b.URL, err, a)
		}
	}
}

// The global --config was accepted by `gantry up` but not used: up wrote
// the CLI config to --write-config or the default path. A user who ran
// `gantry --config ./dev.yaml up --data-dir ./dev` to keep a trial cluster
// apart from the config of the cluster they work on got that config
// overwritten (server, CA and a new admin token).
func TestUpWritesTheConfigNamedByTheGlobalFlag(t *testing.T) {
	want := filepath.Join(t.TempDir(), "dev.yaml")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--config", want, "up"}, want},
		{[]string{"--config", want, "up", "--write-config", "/elsewhere"}, "/elsewhere"},
		{[]string{"up"}, ""},
	} {
		root := newRootCmd()
		up, _, err := root.Find([]string{"up"})
		if err != nil {
			t.Fatal(err)
		}
		got := "unset"
		up.RunE = func(cmd *cobra.Command, args []string) error {
			got = upConfigPath(cmd, cmd.Flags().Lookup("write-config").Value.String())
			return nil
		}
		root.SetArgs(tc.args)
		root.SetOut(io.Discard)
		root.SetErr(io.Discard)
		if err := root.Execute(); err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("gantry %s: config written to %q, want %q", strings.Join(tc.args, " "), got, tc.want)
		}
	}
}

package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// A config for cluster A (server and registry), and a command run with
// --server B --token TB. The image commands went to A's registry with
// B's token: the image landed in the wrong cluster, and B's credential
// was handed to A. They now refuse, naming GANTRY_REGISTRY.
func TestImageCommandsDoNotUseAnotherServersRegistry(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	regA := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.Path+" auth="+r.Header.Get("Authorization"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/v2/_catalog":
			w.Write([]byte(`{"repositories":[]}`))
		default:
			w.Write([]byte(`{}`))
		}
	}))
	defer regA.Close()
	apiB := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{}`))
	}))
	defer apiB.Close()
	cfg := filepath.Join(t.TempDir(), "config")
	regHost := strings.TrimPrefix(regA.URL, "http://")
	os.WriteFile(cfg, []byte("server: http://127.0.0.1:1\ntoken: token-of-A\nregistry: "+regHost+"\n"), 0o600)

	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"--config", cfg, "--server", apiB.URL, "--token", "token-of-B", "image", "ls"})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := root.ExecuteContext(ctx)
	mu.Lock()
	defer mu.Unlock()
	for _, s := range seen {
		if strings.Contains(s, "token-of-B") {
			t.Errorf("the registry of the config's cluster got the token given for %s: %s", apiB.URL, s)
			break
		}
	}
	if len(seen) > 0 {
		t.Errorf("gantry --server %s image ls read the registry of another cluster (%s): err=%v out=%q, requests %q", apiB.URL, regHost, err, out.String(), seen)
	}
	if err == nil || !strings.Contains(err.Error(), "GANTRY_REGISTRY") {
		t.Errorf("gantry --server %s image ls: %v; want an error naming GANTRY_REGISTRY", apiB.URL, err)
	}
}

// As at login, the saved token goes to the config's server only: a
// command whose --server or GANTRY_SERVER names another sent it there.
func TestSavedTokenStaysWithItsServer(t *testing.T) {
	got := make(chan string, 8)
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case got <- r.Header.Get("Authorization"):
		default:
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"User":"x"}`))
	}))
	defer other.Close()
	cfg := filepath.Join(t.TempDir(), "config")
	os.WriteFile(cfg, []byte("server: https://cluster-a.example:7443\ntoken: token-of-A\n"), 0o600)
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"--config", cfg, "--server", other.URL, "whoami"})
	root.Execute()
	close(got)
	for a := range got {
		if strings.Contains(a, "token-of-A") {
			t.Errorf("the token saved for https://cluster-a.example:7443 went to %s: %q", other.URL, a)
		}
	}
}

// --server naming another server than the config's (or the same one by
// another name) sends no token, on purpose; the error was only
// "unauthorized: no token given" (review helper-166). It says why now,
// before sending anything.
func TestAnotherServerWithoutATokenSaysWhy(t *testing.T) {
	var calls int
	var mu sync.Mutex
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls++
		mu.Unlock()
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer api.Close()
	cfg := filepath.Join(t.TempDir(), "config")
	os.WriteFile(cfg, []byte("server: http://127.0.0.1:1\ntoken: token-of-A\n"), 0o600)
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"--config", cfg, "--server", api.URL, "get", "apps"})
	err := root.ExecuteContext(context.Background())
	if err == nil || !strings.Contains(err.Error(), "token is for http://127.0.0.1:1") || !strings.Contains(err.Error(), "--token") {
		t.Errorf("get apps against another server: %v; want the reason the config's token was not sent", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if calls != 0 {
		t.Errorf("%d requests sent without a token", calls)
	}
}

// image push to a name no registry takes (upper case) read the archive
// and drew its progress bar before a bare parse error (review
// helper-166); the name is checked first, saying what it may hold.
func TestImagePushChecksTheNameFirst(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "config")
	os.WriteFile(cfg, []byte("server: https://127.0.0.1:1\ntoken: t\nregistry: 127.0.0.1:5000\n"), 0o600)
	for _, args := range [][]string{
		{"image", "push", "/nonexistent.tar", "Web:V1"},
		{"image", "import", "/nonexistent", "-t", "Web:V1"},
	} {
		root := newRootCmd()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs(append([]string{"--config", cfg}, args...))
		err := root.ExecuteContext(context.Background())
		if err == nil || !strings.Contains(err.Error(), "lower-case") || strings.Contains(out.String(), "push Web") {
			t.Errorf("%q: %v\n%s; want the name refused before anything else", args, err, out.String())
		}
	}
}

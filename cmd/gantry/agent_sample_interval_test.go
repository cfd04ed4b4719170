package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

// gantry agent took --sample-interval -1s without a word, and its sampler
// then panicked; it is refused first, as --ingress-response-timeout is.
func TestAgentRefusesANegativeSampleInterval(t *testing.T) {
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"agent", "--data-dir", t.TempDir(), "--sample-interval", "-1s"})
	err := root.Execute()
	if err == nil || !strings.Contains(err.Error(), "sample-interval") {
		t.Errorf("agent --sample-interval -1s: %v; want a refusal naming --sample-interval", err)
	}
}

// An agent whose data dir had joined one cluster ignored a --server of
// another and went on serving the first without a word. It is refused
// naming both; the same server again (a service restarting it with its
// first command line) is not.
func TestAgentRefusesAnotherServerOnceJoined(t *testing.T) {
	dir := t.TempDir()
	if err := writeIdentity(filepath.Join(dir, "identity.json"), &identity{Server: "https://10.0.0.5:7443", Node: "worker-1"}); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) error {
		root := newRootCmd()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs(append([]string{"agent", "--data-dir", dir}, args...))
		return root.Execute()
	}
	err := run("--server", "https://10.0.0.9:7443", "--join", "gjt_x")
	if err == nil || !strings.Contains(err.Error(), "has joined https://10.0.0.5:7443 as node worker-1, not https://10.0.0.9:7443") {
		t.Errorf("agent with another server: %v", err)
	}
	// The same server goes past that check (and fails later, on the
	// identity this test made up, for another reason).
	if err := run("--server", "https://10.0.0.5:7443/", "--join", "gjt_x"); err != nil && strings.Contains(err.Error(), "has joined") {
		t.Errorf("agent with the same server: %v", err)
	}
}

// gantry server listed the node flags of gantry up (--bridge,
// --node-name, ...) and took them without a word, though it runs no node;
// --no-agent=false started a node, against its help. They are hidden and
// refused.
func TestServerRefusesNodeFlags(t *testing.T) {
	for _, args := range [][]string{
		{"server", "--bridge", "br9"},
		{"server", "--node-name", "n1"},
		{"server", "--no-agent=false"},
	} {
		root := newRootCmd()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs(append(args, "--data-dir", t.TempDir()))
		if err := root.Execute(); err == nil || !strings.Contains(err.Error(), "runs no") && !strings.Contains(err.Error(), "runs none") {
			t.Errorf("gantry %s: %v; want it refused", strings.Join(args, " "), err)
		}
	}
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"server", "--help"})
	if err := root.Execute(); err != nil || strings.Contains(out.String(), "--bridge") || strings.Contains(out.String(), "--no-agent") {
		t.Errorf("gantry server --help lists node flags (%v):\n%s", err, out.String())
	}
}

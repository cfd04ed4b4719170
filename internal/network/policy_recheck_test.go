package network

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeIptables puts fake iptables and iptables-restore first on PATH:
// "iptables -S" prints dir/table, iptables-restore appends its input to
// dir/restores. Nothing touches the host's packet filter.
func fakeIptables(t *testing.T) (dir string) {
	t.Helper()
	if b, err := os.ReadFile(brNetfilterSysctl); err != nil || strings.TrimSpace(string(b)) != "1" {
		t.Skip("SetPolicy would try to change the host's br_netfilter sysctl")
	}
	dir = t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write("iptables", `cat "`+dir+`/table"`+"\n")
	write("iptables-restore", `cat >> "`+dir+`/restores"; echo ---- >> "`+dir+`/restores"`+"\n")
	t.Setenv("PATH", dir+":/usr/bin:/bin")
	setFakeTable(t, dir, "-P FORWARD ACCEPT\n")
	return dir
}

func setFakeTable(t *testing.T, dir, table string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "table"), []byte(table), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, "restores"))
}

func fakeRestores(t *testing.T, dir string) string {
	b, _ := os.ReadFile(filepath.Join(dir, "restores"))
	return string(b)
}

// The agent's periodic reapply, 30 s after the last, is what puts back
// isolation rules someone flushed (a firewall reload). It trusted the
// table when any apply had read it within 30 s, and re-created the
// flushed chains without the FORWARD hook into them, so bridged traffic
// went unfiltered for up to a minute. The reapply (CheckPolicy) reads the
// table first.
func TestCheckPolicyPutsBackAFlushedHook(t *testing.T) {
	dir := fakeIptables(t)
	n := &Network{cfg: Config{BridgeName: "gtzz0"}, log: slog.New(slog.DiscardHandler)}
	members := []Member{{IP: net.IPv4(10, 251, 99, 2), Namespace: "a"}, {IP: net.IPv4(10, 251, 99, 3), Namespace: "b"}}
	ctx := context.Background()

	// A worker admits its instance: the table is read and hooked.
	if err := n.SetPolicy(ctx, members); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(fakeRestores(t, dir), "-I FORWARD 1 ") {
		t.Fatalf("first policy not hooked:\n%s", fakeRestores(t, dir))
	}
	// A firewall reload flushes and deletes every chain; a worker's apply
	// right after trusts the table (no iptables -S on a deploy's path).
	setFakeTable(t, dir, "-P FORWARD ACCEPT\n")
	if err := n.SetPolicy(ctx, members); err != nil {
		t.Fatal(err)
	}
	if got := fakeRestores(t, dir); strings.Contains(got, "-I FORWARD 1 ") {
		t.Fatalf("an apply within PolicyRecheck read the table:\n%s", got)
	}
	// The periodic reapply reads it, and hooks the chain again.
	setFakeTable(t, dir, "-P FORWARD ACCEPT\n")
	if err := n.CheckPolicy(ctx, members); err != nil {
		t.Fatal(err)
	}
	if got := fakeRestores(t, dir); !strings.Contains(got, "-I FORWARD 1 ") {
		t.Fatalf("CheckPolicy after a flush did not put back the FORWARD hook:\n%s", got)
	}
}

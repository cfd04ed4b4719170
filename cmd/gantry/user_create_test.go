package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The global --token (the guide: "--server and --token … take the place
// of its server and token") was shadowed in `user create` by its own bool
// --token: `gantry --token T user create alice` read T as an argument and
// failed with "accepts 1 arg(s), received 2". The user's token is asked
// for with --issue-token now.
func TestUserCreateWithTheGlobalTokenFlag(t *testing.T) {
	rs := startRolloutServer(t)
	out, err, _ := rs.run(t, 10*time.Second, "user", "create", "alice")
	if err != nil {
		t.Fatalf("gantry --server S --token T user create alice: %v (out %q)", err, out)
	}
}

// `user create alice --role devloper --issue-token` once created alice,
// then failed on the role: no binding, no token, exit 1; the same command
// again (role fixed) failed with "already exists". The role is checked
// first now.
func TestUserCreateWithABadRoleCreatesNoUser(t *testing.T) {
	rs := startRolloutServer(t)
	t.Setenv("GANTRY_SERVER", rs.url)
	t.Setenv("GANTRY_TOKEN", rs.token)
	run := func(args ...string) error {
		root := newRootCmd()
		var out strings.Builder
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs(append([]string{"--config", filepath.Join(t.TempDir(), "none")}, args...))
		return root.ExecuteContext(context.Background())
	}
	if err := run("user", "create", "alice", "--role", "devloper", "--issue-token"); err == nil {
		t.Fatal("a role that does not exist was accepted")
	}
	if err := run("user", "create", "alice", "--role", "developer", "--issue-token"); err != nil {
		t.Fatalf("after the refused create, the corrected one fails: %v", err)
	}
}

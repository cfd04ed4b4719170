package main

import (
	"context"
	"strings"
	"testing"
)

// A token with a trailing newline (GANTRY_TOKEN=$(cat token-file) keeps
// none, but a secret store or --token "$(...)" can) failed as "invalid
// header field value for Authorization", which read as a server away
// (review helper-166).
func TestATokenIsTrimmed(t *testing.T) {
	rs := startRolloutServer(t)
	root := newRootCmd()
	var out strings.Builder
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"--server", rs.url, "--token", rs.token + "\n", "get", "apps"})
	if err := root.ExecuteContext(context.Background()); err != nil {
		t.Errorf("get apps with the token and a newline: %v\n%s", err, out.String())
	}
	t.Setenv("GANTRY_TOKEN", " "+rs.token+"\r\n")
	root = newRootCmd()
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"--server", rs.url, "get", "apps"})
	if err := root.ExecuteContext(context.Background()); err != nil {
		t.Errorf("get apps with GANTRY_TOKEN padded: %v\n%s", err, out.String())
	}
}

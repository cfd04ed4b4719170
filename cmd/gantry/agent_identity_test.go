package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/pki"
)

// An agent whose certificate had ended, or that was given the join token
// of another cluster (its server set up again) while its data dir held
// an identity, started and retried its registration for ever as "server
// unavailable" (the token was ignored without a word). It refuses to
// start now, saying what to do.
func TestAgentRefusesAnIdentityTheServerWouldNot(t *testing.T) {
	_, id, joinToken := joinedNode(t)
	nid, err := newNodeIdentity(filepath.Join(t.TempDir(), "identity.json"), id)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := usableIdentity(nid, joinToken, now); err != nil {
		t.Errorf("the identity with its own cluster's token again: %v", err)
	}
	other, err := pki.LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := pki.NewJoinToken(other.Pin(), time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	if err := usableIdentity(nid, tok, now); err == nil || !strings.Contains(err.Error(), "token of another cluster") {
		t.Errorf("a join token of another cluster: %v, want a refusal saying so", err)
	}
	if err := usableIdentity(nid, "", nid.expires().Add(time.Minute)); err == nil || !strings.Contains(err.Error(), "join again") {
		t.Errorf("an ended certificate: %v, want a refusal saying to join again", err)
	}
}

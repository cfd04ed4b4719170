package main

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/client"
	"github.com/gantry-dev/gantry/internal/apiserver"
	"github.com/gantry-dev/gantry/internal/apiserver/apiservertest"
	"github.com/gantry-dev/gantry/internal/pki"
)

// An agent whose certificate had ended, or that was given the join token
// of another cluster (its server set up again) while its data dir held
// an identity, started and retried its registration for ever as "server
// unavailable" (the token was ignored without a word). It refuses to
// start now, saying what to do.
func TestAgentRefusesAnIdentityTheServerWouldNot(t *testing.T) {
	ctx := context.Background()
	ca, err := pki.LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv := apiservertest.StartTLS(t, t.TempDir(), ca)
	admin, err := client.New(client.Config{Server: srv.URL, Token: srv.Token, CA: ca.CertPEM()})
	if err != nil {
		t.Fatal(err)
	}
	var jt apiserver.CreatedJoinToken
	if _, err := admin.Do(ctx, http.MethodPost, "/api/v1/jointokens", nil, &v1.JoinToken{TypeMeta: v1.TypeMeta{Kind: "JoinToken"}}, &jt); err != nil {
		t.Fatal(err)
	}
	id, err := joinCluster(ctx, &agentOptions{server: srv.URL, join: jt.Token, name: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	nid, err := newNodeIdentity(filepath.Join(t.TempDir(), "identity.json"), id)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := usableIdentity(nid, jt.Token, now); err != nil {
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

package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/client"
	"github.com/gantry-dev/gantry/internal/apiserver"
	"github.com/gantry-dev/gantry/internal/apiserver/apiservertest"
	"github.com/gantry-dev/gantry/internal/pki"
)

// An agent renews its identity when its certificate nears its end: the
// new certificate, key and registry credential replace the old ones in
// identity.json and in use, and the agent's next connections present
// the new certificate. Before that, nothing is renewed.
func TestAgentRenewsItsIdentity(t *testing.T) {
	ctx := context.Background()
	srv, id, _ := joinedNode(t)
	path := filepath.Join(t.TempDir(), "identity.json")
	if err := writeIdentity(path, id); err != nil {
		t.Fatal(err)
	}
	nid, err := newNodeIdentity(path, id)
	if err != nil {
		t.Fatal(err)
	}
	api, err := client.New(client.Config{Server: srv.URL, CA: []byte(id.CA), GetClientCertificate: nid.clientCert})
	if err != nil {
		t.Fatal(err)
	}
	whoami := func(t *testing.T) apiserver.WhoAmI {
		t.Helper()
		// A new client each time: the TLS handshake is where the
		// certificate is presented.
		c, err := client.New(client.Config{Server: srv.URL, CA: []byte(id.CA), GetClientCertificate: nid.clientCert})
		if err != nil {
			t.Fatal(err)
		}
		var who apiserver.WhoAmI
		if _, err := c.Do(ctx, http.MethodGet, "/api/v1/whoami", nil, nil, &who); err != nil {
			t.Fatal(err)
		}
		return who
	}
	if who := whoami(t); who.Node != "n1" {
		t.Fatalf("whoami as the joined node: %+v", who)
	}

	before := nid.current()
	if renewed, err := nid.renewIfDue(ctx, api, time.Now()); renewed || err != nil {
		t.Fatalf("renewal of a new certificate: %v, %v; want none", renewed, err)
	}
	late := nid.expires().Add(-pki.RenewBefore + time.Hour)
	if renewed, err := nid.renewIfDue(ctx, api, late); !renewed || err != nil {
		t.Fatalf("renewal 30 days before the end: %v, %v; want renewed", renewed, err)
	}
	after := nid.current()
	if after.Certificate == before.Certificate || after.Key == before.Key || after.ServerCert == before.ServerCert ||
		after.RegistryToken == before.RegistryToken || after.Node != "n1" || after.Server != before.Server || after.CA != before.CA {
		t.Fatalf("identity after renewal: certificate, key, listener certificate and registry token must all be new, the rest kept")
	}
	var onDisk identity
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &onDisk); err != nil || onDisk != after {
		t.Fatalf("identity.json after renewal does not hold the renewed identity (%v)", err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("identity.json mode: %v, %v; want 0600", fi.Mode(), err)
	}
	if leaf, _ := nid.clientCert(nil); leaf.Leaf == nil || string(leaf.Certificate[0]) == string(mustCertDER(t, before.Certificate)) {
		t.Fatal("the client certificate in use is still the old one")
	}
	if cert, _ := nid.listenerCert(nil); cert == nil || string(cert.Certificate[0]) != string(mustCertDER(t, after.ServerCert)) {
		t.Fatal("the listener certificate in use is not the renewed one")
	}
	if who := whoami(t); who.Node != "n1" {
		t.Fatalf("whoami with the renewed certificate: %+v", who)
	}
	// Both registry credentials work: the old one for a while still
	// (renewalGrace: the answer might not have reached the node).
	for tok, want := range map[string]bool{before.RegistryToken: true, after.RegistryToken: true} {
		c, _ := client.New(client.Config{Server: srv.URL, Token: tok, CA: []byte(id.CA)})
		_, err := c.Do(ctx, http.MethodGet, "/api/v1/whoami", nil, nil, &apiserver.WhoAmI{})
		if (err == nil) != want {
			t.Errorf("whoami with a registry token (current %v): %v", want, err)
		}
	}
}

func mustCertDER(t *testing.T, certPEM string) []byte {
	t.Helper()
	leaf, err := pki.ParseCert([]byte(certPEM))
	if err != nil {
		t.Fatal(err)
	}
	return leaf.Raw
}

// joinedNode is a TLS API server with a CA and the identity of node n1,
// joined to it as gantry agent --join does, with the join token used.
func joinedNode(t *testing.T) (*apiservertest.Server, *identity, string) {
	t.Helper()
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
	return srv, id, jt.Token
}

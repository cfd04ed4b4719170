package apiserver_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/client"
	"github.com/gantry-dev/gantry/internal/apiserver"
	"github.com/gantry-dev/gantry/internal/apiserver/apiservertest"
	"github.com/gantry-dev/gantry/internal/pki"
	"github.com/gantry-dev/gantry/internal/store"
)

// joinAs joins node with a fresh key and returns the answer and the key.
func joinAs(t *testing.T, url, token, node string) (*http.Response, apiserver.JoinResponse, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.NodeCSR(node, key)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(apiserver.JoinRequest{Node: node, Token: token, CSR: string(csr)})
	resp, err := http.Post(url+"/api/v1/join", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var jr apiserver.JoinResponse
	json.NewDecoder(resp.Body).Decode(&jr)
	return resp, jr, key
}

func startJoinServer(t *testing.T) (*apiservertest.Server, *pki.CA, string) {
	t.Helper()
	ca, err := pki.LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv := apiservertest.Start(t, t.TempDir(), "127.0.0.1:0", apiserver.WithCA(ca))
	code, created := postJoinToken(t, srv, "", `{"kind":"JoinToken"}`)
	if created.Token == "" {
		t.Fatalf("no join token (HTTP %d)", code)
	}
	return srv, ca, created.Token
}

// postJoinToken asks srv, as its admin, for a join token (POST
// /api/v1/jointokens with query and body), and returns the answer.
func postJoinToken(t *testing.T, srv *apiservertest.Server, query, body string) (int, apiserver.CreatedJoinToken) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/v1/jointokens"+query, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+srv.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var created apiserver.CreatedJoinToken
	json.NewDecoder(resp.Body).Decode(&created)
	return resp.StatusCode, created
}

// A join token lets its holder name the node, "localhost" included, and
// the node's listener certificate comes from the cluster CA, which the
// CLI and agents trust for the API server: a client of the API server
// must refuse a node listener's certificate whatever names it carries.
func TestNodeListenerCertificateCannotPassForTheAPIServer(t *testing.T) {
	srv, ca, joinTok := startJoinServer(t)
	resp, jr, key := joinAs(t, srv.URL, joinTok, "localhost")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("join as localhost: HTTP %d", resp.StatusCode)
	}
	leaf, err := pki.ParseCert([]byte(jr.ServerCertificate))
	if err != nil {
		t.Fatal(err)
	}
	fake := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"kind":"Namespace","metadata":{"name":"default"}}`))
	}))
	fake.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}}}
	fake.StartTLS()
	defer fake.Close()
	addr := strings.Replace(fake.URL, "127.0.0.1", "localhost", 1)
	c, err := client.New(client.Config{Server: addr, Token: "stolen-soon", CA: ca.CertPEM()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = client.Get[*v1.Namespace](context.Background(), c, "", "default")
	if err == nil || !strings.Contains(err.Error(), "node agent's certificate") {
		t.Fatalf("API client talking to a node listener's certificate for localhost: %v; want it refused", err)
	}
}

// A join under the name of a live node is refused: it would take over
// that node's identity (its agent address, its registry credential).
// A dead node's name can be joined again, and each join replaces the
// node's registry credential rather than adding one that never expires.
func TestJoinUnderALiveNodesNameIsRefused(t *testing.T) {
	srv, _, joinTok := startJoinServer(t)
	ctx := context.Background()
	n := &v1.Node{TypeMeta: v1.TypeMeta{Kind: "Node"}, Metadata: v1.ObjectMeta{Name: "n1"}}
	n.Status.Ready = true
	if err := srv.Store.Create(ctx, n); err != nil {
		t.Fatal(err)
	}
	if resp, _, _ := joinAs(t, srv.URL, joinTok, "n1"); resp.StatusCode != http.StatusConflict {
		t.Errorf("join under live node n1: HTTP %d; want 409", resp.StatusCode)
	}
	if _, err := store.Mutate(ctx, srv.Store, "", "n1", func(n *v1.Node) error { n.Status.Ready = false; return nil }); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if resp, _, _ := joinAs(t, srv.URL, joinTok, "n1"); resp.StatusCode != http.StatusOK {
			t.Fatalf("join under dead node n1: HTTP %d; want 200", resp.StatusCode)
		}
	}
	toks, _, err := store.List[*v1.Token](ctx, srv.Store, store.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var mine []*v1.Token
	for _, tk := range toks {
		if tk.Spec.Node == "n1" {
			mine = append(mine, tk)
		}
	}
	if len(mine) != 1 || mine[0].Spec.Expires == nil {
		t.Errorf("registry credentials of n1 after two joins: %d (expiry of the first: %v); want one, expiring", len(mine), func() any {
			if len(mine) > 0 {
				return mine[0].Spec.Expires
			}
			return nil
		}())
	}
}

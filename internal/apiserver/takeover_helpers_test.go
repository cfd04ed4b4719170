package apiserver_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/apiserver"
	"github.com/gantry-dev/gantry/internal/apiserver/apiservertest"
	"github.com/gantry-dev/gantry/internal/pki"
	"github.com/gantry-dev/gantry/internal/store"
)

// takeover is a TLS API server with a CA where machines join under one
// node name, worker-1, as agents do: for the tests of a join under a dead
// node's name.
type takeover struct {
	t   *testing.T
	ca  *pki.CA
	srv *apiservertest.Server
}

func newTakeover(t *testing.T) *takeover {
	t.Helper()
	ca, err := pki.LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return &takeover{t: t, ca: ca, srv: apiservertest.StartTLS(t, t.TempDir(), ca)}
}

// client is an HTTPS client presenting cert (none if nil).
func (k *takeover) client(cert *tls.Certificate) *http.Client {
	cfg, _ := pki.ClientTLS(k.ca.CertPEM(), cert)
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
}

// do sends a request with cert or bearer and returns the answer.
func (k *takeover) do(cert *tls.Certificate, bearer, method, path string, body any) (int, []byte) {
	k.t.Helper()
	var rd io.Reader = http.NoBody
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, k.srv.URL+path, rd)
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := k.client(cert).Do(req)
	if err != nil {
		k.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// join joins a machine as worker-1 with a new key and a new join token,
// and registers it; the Node is then marked NotReady, as a machine that
// goes dark leaves it, so that another may join under the name.
func (k *takeover) join() tls.Certificate {
	k.t.Helper()
	code, body := k.do(nil, k.srv.Token, "POST", "/api/v1/jointokens", &v1.JoinToken{TypeMeta: v1.TypeMeta{Kind: "JoinToken"}})
	var jt apiserver.CreatedJoinToken
	if json.Unmarshal(body, &jt); code != http.StatusCreated {
		k.t.Fatalf("join token: %d %s", code, body)
	}
	key, _ := pki.NewKey()
	csr, _ := pki.NodeCSR("worker-1", key)
	code, body = k.do(nil, "", "POST", "/api/v1/join", apiserver.JoinRequest{Node: "worker-1", Token: jt.Token, CSR: string(csr)})
	var jr apiserver.JoinResponse
	if json.Unmarshal(body, &jr); code != http.StatusOK {
		k.t.Fatalf("join: %d %s", code, body)
	}
	keyPEM, _ := pki.EncodeKey(key)
	c, err := tls.X509KeyPair([]byte(jr.Certificate), keyPEM)
	if err != nil {
		k.t.Fatal(err)
	}
	if code, body := k.do(&c, "", "POST", "/api/v1/nodes/worker-1/register", map[string]any{"status": v1.NodeStatus{}}); code != http.StatusOK {
		k.t.Fatalf("register: %d %s", code, body)
	}
	if _, err := store.Mutate(context.Background(), k.srv.Store, "", "worker-1", func(n *v1.Node) error { n.Status.Ready = false; return nil }); err != nil {
		k.t.Fatal(err)
	}
	// Certificates carry whole seconds: the next join's must start
	// after this one's.
	time.Sleep(1100 * time.Millisecond)
	return c
}

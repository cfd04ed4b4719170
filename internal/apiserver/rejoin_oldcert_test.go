package apiserver_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/apiserver"
	"github.com/gantry-dev/gantry/internal/apiserver/apiservertest"
	"github.com/gantry-dev/gantry/internal/pki"
	"github.com/gantry-dev/gantry/internal/store"
)

// Machine A joins as worker-1 and goes dark; machine B joins under the
// dead name (a reinstall or a replacement, as the guide allows). A came
// back with its old identity.json and its certificate still acted as
// worker-1: both agents heartbeat the same Node and ran every instance
// bound to it. Certificates from before the last join are refused now,
// renewal included; B's go on working, and B's writes of its status do
// not undo the join.
func TestAnOldCertificateLosesTheNameToALaterJoin(t *testing.T) {
	ca, err := pki.LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv := apiservertest.StartTLS(t, t.TempDir(), ca)
	ctx := context.Background()
	do := func(cert *tls.Certificate, bearer, method, path string, body any) (int, []byte) {
		t.Helper()
		cfg, _ := pki.ClientTLS(ca.CertPEM(), cert)
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
		var rd *bytes.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		} else {
			rd = bytes.NewReader(nil)
		}
		req, _ := http.NewRequest(method, srv.URL+path, rd)
		req.Header.Set("Content-Type", "application/json")
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var buf bytes.Buffer
		buf.ReadFrom(resp.Body)
		return resp.StatusCode, buf.Bytes()
	}
	join := func() tls.Certificate {
		code, body := do(nil, srv.Token, "POST", "/api/v1/jointokens", &v1.JoinToken{TypeMeta: v1.TypeMeta{Kind: "JoinToken"}})
		var jt apiserver.CreatedJoinToken
		if json.Unmarshal(body, &jt); code != http.StatusCreated {
			t.Fatalf("token: %d %s", code, body)
		}
		key, _ := pki.NewKey()
		csr, _ := pki.NodeCSR("worker-1", key)
		code, body = do(nil, "", "POST", "/api/v1/join", apiserver.JoinRequest{Node: "worker-1", Token: jt.Token, CSR: string(csr)})
		var jr apiserver.JoinResponse
		if json.Unmarshal(body, &jr); code != http.StatusOK {
			t.Fatalf("join: %d %s", code, body)
		}
		keyPEM, _ := pki.EncodeKey(key)
		c, err := tls.X509KeyPair([]byte(jr.Certificate), keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	certA := join()
	if code, body := do(&certA, "", "POST", "/api/v1/nodes/worker-1/register", map[string]any{"status": v1.NodeStatus{}}); code != 200 {
		t.Fatalf("A registers: %d %s", code, body)
	}
	// A goes dark: the lifecycle controller marks it NotReady.
	if _, err := store.Mutate(ctx, srv.Store, "", "worker-1", func(n *v1.Node) error { n.Status.Ready = false; return nil }); err != nil {
		t.Fatal(err)
	}
	// Certificates carry whole seconds: B's must start after A's.
	time.Sleep(1100 * time.Millisecond)
	certB := join() // the replacement machine, same name
	if code, body := do(&certB, "", "POST", "/api/v1/nodes/worker-1/register", map[string]any{"status": v1.NodeStatus{}}); code != 200 {
		t.Fatalf("B registers: %d %s", code, body)
	}
	if code, body := do(&certB, "", "PUT", "/api/v1/nodes/worker-1/status", &v1.Node{TypeMeta: v1.TypeMeta{Kind: "Node"}, Metadata: v1.ObjectMeta{Name: "worker-1"}}); code != http.StatusOK {
		t.Fatalf("B writes its status: %d %s", code, body)
	}
	if n, err := store.Get[*v1.Node](ctx, srv.Store, "", "worker-1"); err != nil || n.Status.JoinedAt == nil {
		t.Fatalf("after B's register and status write the Node has no joinedAt: %v", err)
	}
	// A comes back with its old identity.json.
	for _, c := range []struct{ method, path string }{
		{"POST", "/api/v1/nodes/worker-1/heartbeat"},
		{"GET", "/api/v1/instances"},
		{"POST", "/api/v1/join/renew"},
	} {
		if code, body := do(&certA, "", c.method, c.path, nil); code != http.StatusUnauthorized || !strings.Contains(string(body), "another machine joined") {
			t.Errorf("A's old certificate, %s %s: %d %.200s; want 401 saying another machine joined", c.method, c.path, code, body)
		}
	}
	if code, body := do(&certB, "", "POST", "/api/v1/nodes/worker-1/heartbeat", nil); code != http.StatusNoContent {
		t.Errorf("B's heartbeat: %d %s, want 204", code, body)
	}
}

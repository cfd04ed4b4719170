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

// A node renews its identity with its current client certificate and a
// request for a new key: it gets certificates for that key and a new
// registry credential in place of the old. Nothing else can renew: not a
// bearer token (even alongside the certificate), not a request naming
// another node.
func TestRenewNodeIdentity(t *testing.T) {
	ca, err := pki.LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv := apiservertest.StartTLS(t, t.TempDir(), ca)
	ctx := context.Background()
	post := func(t *testing.T, cert *tls.Certificate, bearer, path string, body any) (int, []byte) {
		t.Helper()
		cfg, err := pki.ClientTLS(ca.CertPEM(), cert)
		if err != nil {
			t.Fatal(err)
		}
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
		b, _ := json.Marshal(body)
		req, _ := http.NewRequest(http.MethodPost, srv.URL+path, bytes.NewReader(b))
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
	csrFor := func(t *testing.T, node string) (string, []byte) {
		t.Helper()
		key, err := pki.NewKey()
		if err != nil {
			t.Fatal(err)
		}
		csr, err := pki.NodeCSR(node, key)
		if err != nil {
			t.Fatal(err)
		}
		keyPEM, err := pki.EncodeKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return string(csr), keyPEM
	}

	code, body := post(t, nil, srv.Token, "/api/v1/jointokens", &v1.JoinToken{TypeMeta: v1.TypeMeta{Kind: "JoinToken"}})
	var jt apiserver.CreatedJoinToken
	if json.Unmarshal(body, &jt); code != http.StatusCreated || jt.Token == "" {
		t.Fatalf("join token: HTTP %d %s", code, body)
	}
	csr, keyPEM := csrFor(t, "n1")
	code, body = post(t, nil, "", "/api/v1/join", apiserver.JoinRequest{Node: "n1", Token: jt.Token, CSR: csr})
	var joined apiserver.JoinResponse
	if json.Unmarshal(body, &joined); code != http.StatusOK {
		t.Fatalf("join: HTTP %d %s", code, body)
	}
	cert, err := tls.X509KeyPair([]byte(joined.Certificate), keyPEM)
	if err != nil {
		t.Fatal(err)
	}

	refusals := []struct {
		name   string
		cert   *tls.Certificate
		bearer string
		body   any
		want   int
	}{
		{"admin token, no certificate", nil, srv.Token, apiserver.RenewRequest{CSR: csr}, http.StatusUnauthorized},
		{"the node's registry token", nil, joined.RegistryToken, apiserver.RenewRequest{CSR: csr}, http.StatusUnauthorized},
		{"certificate and a bearer token", &cert, srv.Token, apiserver.RenewRequest{CSR: csr}, http.StatusUnauthorized},
		{"nothing", nil, "", apiserver.RenewRequest{CSR: csr}, http.StatusUnauthorized},
		{"a request for another node", &cert, "", apiserver.RenewRequest{CSR: func() string { c, _ := csrFor(t, "n2"); return c }()}, http.StatusBadRequest},
		{"no request", &cert, "", apiserver.RenewRequest{}, http.StatusBadRequest},
		{"not JSON", &cert, "", "csr", http.StatusBadRequest},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			code, body := post(t, tc.cert, tc.bearer, "/api/v1/join/renew", tc.body)
			var st v1.Status
			if json.Unmarshal(body, &st); code != tc.want || st.Message == "" {
				t.Errorf("HTTP %d %s; want %d with a message", code, body, tc.want)
			}
		})
	}

	csr2, key2PEM := csrFor(t, "n1")
	code, body = post(t, &cert, "", "/api/v1/join/renew", apiserver.RenewRequest{CSR: csr2})
	var renewed apiserver.JoinResponse
	if json.Unmarshal(body, &renewed); code != http.StatusOK {
		t.Fatalf("renew: HTTP %d %s", code, body)
	}
	for _, c := range []string{renewed.Certificate, renewed.ServerCertificate} {
		if _, err := tls.X509KeyPair([]byte(c), key2PEM); err != nil {
			t.Errorf("a renewed certificate is not for the new key: %v", err)
		}
	}
	leaf, err := pki.ParseCert([]byte(renewed.Certificate))
	if err != nil {
		t.Fatal(err)
	}
	if name, ok := pki.NodeFromCert(leaf); !ok || name != "n1" {
		t.Errorf("renewed certificate names %q, %v; want node n1", name, ok)
	}
	if renewed.RegistryToken == "" || renewed.RegistryToken == joined.RegistryToken {
		t.Errorf("registry token after renewal: %q (was %q); want a new one", renewed.RegistryToken, joined.RegistryToken)
	}
	toks, _, err := store.List[*v1.Token](ctx, srv.Store, store.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The old credential lasts two hours more, not its year: the
	// renewal's answer may not have reached the node, which cannot renew
	// again within the hour.
	n, graced := 0, 0
	for _, tk := range toks {
		if tk.Spec.Node == "n1" {
			n++
			if tk.Spec.Expires != nil && tk.Spec.Expires.Before(time.Now().Add(2*time.Hour+time.Minute)) {
				graced++
			}
		}
	}
	if n != 2 || graced != 1 {
		t.Errorf("registry credentials of n1 after a renewal: %d, %d of them ending within two hours; want the new one and the old one cut to two hours", n, graced)
	}
	// A second renewal within the hour is refused (429, with when to come
	// back), whichever certificate asks: a node renews once a year.
	code, body = post(t, &cert, "", "/api/v1/join/renew", apiserver.RenewRequest{CSR: csr2})
	var st v1.Status
	if json.Unmarshal(body, &st); code != http.StatusTooManyRequests || !strings.Contains(st.Message, "renewed its identity") {
		t.Errorf("second renewal at once: HTTP %d %s; want 429 saying why", code, body)
	}
	// The new certificate identifies the node.
	cert2, _ := tls.X509KeyPair([]byte(renewed.Certificate), key2PEM)
	cfg, _ := pki.ClientTLS(ca.CertPEM(), &cert2)
	resp, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}).Get(srv.URL + "/api/v1/whoami")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var who apiserver.WhoAmI
	if json.NewDecoder(resp.Body).Decode(&who); who.Node != "n1" {
		t.Errorf("whoami with the renewed certificate: HTTP %d %+v; want node n1", resp.StatusCode, who)
	}
}

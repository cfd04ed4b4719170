package client_test

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/client"
	"github.com/gantry-dev/gantry/internal/pki"
)

// Every transport error was "unavailable", certificate failures too: an
// agent whose server was set up again (a new CA), or whose certificate
// expired, retried for ever as if the server were away, saying nothing
// of what to do. Certificate failures are not temporary now, and say so.
func TestCertificateFailuresAreNotUnavailable(t *testing.T) {
	serverCA, err := pki.LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	otherCA, err := pki.LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	start := func(clientCAs *pki.CA) string {
		ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
		cert, err := serverCA.IssueServer([]string{"localhost"}, []net.IP{net.ParseIP("127.0.0.1")})
		if err != nil {
			t.Fatal(err)
		}
		ts.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
		if clientCAs != nil {
			ts.TLS.ClientAuth, ts.TLS.ClientCAs = tls.RequireAndVerifyClientCert, clientCAs.Pool()
		}
		ts.StartTLS()
		t.Cleanup(ts.Close)
		return ts.URL
	}
	ctx := context.Background()

	// The client trusts another CA than the one that signed the server.
	c, err := client.New(client.Config{Server: start(nil), CA: otherCA.CertPEM()})
	if err != nil {
		t.Fatal(err)
	}
	err = c.Heartbeat(ctx, "n1")
	if err == nil || client.Temporary(err) || !strings.Contains(err.Error(), "not signed by the CA this client trusts") {
		t.Errorf("a server of another CA: %v (temporary %v), want a lasting error saying so", err, client.Temporary(err))
	}

	// The server refuses the client's certificate (one of another
	// cluster's CA).
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := otherCA.IssueNode("n1", key.Public())
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := pki.EncodeKey(key)
	if err != nil {
		t.Fatal(err)
	}
	nodeCert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	c, err = client.New(client.Config{Server: start(serverCA), CA: serverCA.CertPEM(), Certificates: []tls.Certificate{nodeCert}})
	if err != nil {
		t.Fatal(err)
	}
	err = c.Heartbeat(ctx, "n1")
	if err == nil || client.Temporary(err) || !strings.Contains(err.Error(), "refused this client's certificate") {
		t.Errorf("a server that refuses the client's certificate: %v (temporary %v), want a lasting error saying so", err, client.Temporary(err))
	}
}

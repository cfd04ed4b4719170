package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestIssueServerNamesAndUsages(t *testing.T) {
	ca, _ := newTestCA(t)
	c, err := ca.IssueServer([]string{"gantry.example.com", "localhost"}, []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Certificate) != 2 || string(c.Certificate[1]) != string(ca.Certificate().Raw) {
		t.Fatal("the chain does not carry the CA after the leaf")
	}
	if life := c.Leaf.NotAfter.Sub(c.Leaf.NotBefore); life < ServerValidity || life > ServerValidity+time.Hour {
		t.Fatalf("valid for %v, want about a year", life)
	}
	for _, tc := range []struct {
		host  string
		usage x509.ExtKeyUsage
		ok    bool
	}{
		{"gantry.example.com", x509.ExtKeyUsageServerAuth, true},
		{"localhost", x509.ExtKeyUsageServerAuth, true},
		{"127.0.0.1", x509.ExtKeyUsageServerAuth, true},
		{"::1", x509.ExtKeyUsageServerAuth, true},
		{"other.example.com", x509.ExtKeyUsageServerAuth, false},
		{"10.0.0.1", x509.ExtKeyUsageServerAuth, false},
		{"localhost", x509.ExtKeyUsageClientAuth, false},
	} {
		verdict := "is refused"
		if tc.ok {
			verdict = "verifies"
		}
		usage := "server"
		if tc.usage == x509.ExtKeyUsageClientAuth {
			usage = "client"
		}
		t.Run(tc.host+" as "+usage+" "+verdict, func(t *testing.T) {
			_, err := c.Leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: tc.host, KeyUsages: []x509.ExtKeyUsage{tc.usage}})
			if (err == nil) != tc.ok {
				t.Fatalf("verify: %v", err)
			}
		})
	}
	t.Run("another CA does not verify it", func(t *testing.T) {
		other, _ := newTestCA(t)
		if _, err := c.Leaf.Verify(x509.VerifyOptions{Roots: other.Pool(), DNSName: "localhost"}); err == nil {
			t.Fatal("verified under a foreign CA")
		}
	})
	t.Run("a certificate without names is refused", func(t *testing.T) {
		if _, err := ca.IssueServer(nil, nil); err == nil {
			t.Fatal("issued a certificate for no name")
		}
	})
}

func TestEnsureServerCert(t *testing.T) {
	ca, dataDir := newTestCA(t)
	dir := Dir(dataDir)
	serial := func(c tls.Certificate) string { return c.Leaf.SerialNumber.String() }
	first, err := ca.EnsureServerCert(dir, "apiserver", "localhost", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if got := mode(t, filepath.Join(dir, "apiserver.key")); got != 0o600 {
		t.Fatalf("key mode %04o", got)
	}
	if got := mode(t, filepath.Join(dir, "apiserver.crt")); got != 0o644 {
		t.Fatalf("certificate mode %04o", got)
	}
	if len(first.Certificate) != 2 {
		t.Fatal("the issued certificate lacks the CA in its chain")
	}
	loaded, err := LoadKeyPair(dir, "apiserver")
	if err != nil || len(loaded.Certificate) != 2 {
		t.Fatalf("the file does not carry the chain: %v", err)
	}

	t.Run("the same names keep the certificate", func(t *testing.T) {
		c, err := ca.EnsureServerCert(dir, "apiserver", "localhost", "127.0.0.1")
		if err != nil || serial(c) != serial(first) {
			t.Fatalf("re-issued: %v", err)
		}
	})
	t.Run("the same names in another order and case keep it", func(t *testing.T) {
		c, err := ca.EnsureServerCert(dir, "apiserver", "127.0.0.1", "LocalHost", "localhost")
		if err != nil || serial(c) != serial(first) {
			t.Fatalf("re-issued: %v", err)
		}
	})
	var renamed tls.Certificate
	t.Run("a new name re-issues", func(t *testing.T) {
		renamed, err = ca.EnsureServerCert(dir, "apiserver", "localhost", "127.0.0.1", "gantry.internal")
		if err != nil || serial(renamed) == serial(first) {
			t.Fatalf("kept: %v", err)
		}
		if err := renamed.Leaf.VerifyHostname("gantry.internal"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a dropped IP re-issues", func(t *testing.T) {
		c, err := ca.EnsureServerCert(dir, "apiserver", "localhost", "gantry.internal")
		if err != nil || serial(c) == serial(renamed) {
			t.Fatalf("kept: %v", err)
		}
		if c.Leaf.VerifyHostname("127.0.0.1") == nil {
			t.Fatal("the dropped IP is still in the certificate")
		}
		renamed = c
	})
	t.Run("a certificate nearing expiry re-issues", func(t *testing.T) {
		defer func() { ca.now = time.Now }()
		ca.now = func() time.Time { return renamed.Leaf.NotAfter.Add(-29 * 24 * time.Hour) }
		c, err := ca.EnsureServerCert(dir, "apiserver", "localhost", "gantry.internal")
		if err != nil || serial(c) == serial(renamed) {
			t.Fatalf("kept: %v", err)
		}
		renamed = c
	})
	t.Run("a certificate of another CA is replaced", func(t *testing.T) {
		other, _ := newTestCA(t)
		o, err := other.EnsureServerCert(dir, "apiserver", "localhost", "gantry.internal")
		if err != nil {
			t.Fatal(err)
		}
		c, err := ca.EnsureServerCert(dir, "apiserver", "localhost", "gantry.internal")
		if err != nil || serial(c) == serial(o) {
			t.Fatalf("kept the foreign certificate: %v", err)
		}
		if err := ca.Verify(c.Leaf, x509.ExtKeyUsageServerAuth); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a key file others can read is refused, not replaced", func(t *testing.T) {
		key := filepath.Join(dir, "apiserver.key")
		if err := os.Chmod(key, 0o644); err != nil {
			t.Fatal(err)
		}
		defer os.Chmod(key, 0o600)
		if _, err := ca.EnsureServerCert(dir, "apiserver", "localhost", "gantry.internal"); !errors.Is(err, ErrInsecureKeyFile) {
			t.Fatalf("got %v", err)
		}
		if _, err := LoadKeyPair(dir, "apiserver"); !errors.Is(err, ErrInsecureKeyFile) {
			t.Fatalf("LoadKeyPair: got %v", err)
		}
	})
	t.Run("a damaged certificate file is replaced", func(t *testing.T) {
		if err := os.WriteFile(filepath.Join(dir, "apiserver.crt"), []byte("junk"), 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := ca.EnsureServerCert(dir, "apiserver", "localhost")
		if err != nil || ca.Verify(c.Leaf, x509.ExtKeyUsageServerAuth) != nil {
			t.Fatalf("not replaced: %v", err)
		}
	})
}

func TestNeedsRenewal(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	year := &x509.Certificate{NotBefore: now.Add(-time.Hour), NotAfter: now.Add(365 * 24 * time.Hour)}
	short := &x509.Certificate{NotBefore: now, NotAfter: now.Add(30 * time.Hour)}
	for _, tc := range []struct {
		name string
		c    *x509.Certificate
		at   time.Time
		want bool
	}{
		{"a fresh one-year certificate is kept", year, now, false},
		{"a one-year certificate with 31 days left is kept", year, year.NotAfter.Add(-31 * 24 * time.Hour), false},
		{"a one-year certificate with 29 days left is renewed", year, year.NotAfter.Add(-29 * 24 * time.Hour), true},
		{"an expired certificate is renewed", year, year.NotAfter.Add(time.Second), true},
		{"a 30-hour certificate is kept for its first two thirds", short, now.Add(19 * time.Hour), false},
		{"a 30-hour certificate is renewed in its last third", short, now.Add(21 * time.Hour), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := NeedsRenewal(tc.c, tc.at); got != tc.want {
				t.Fatalf("NeedsRenewal = %v", got)
			}
		})
	}
}

func TestServingCertRenewsWhileServing(t *testing.T) {
	ca, dataDir := newTestCA(t)
	var clock time.Time
	ca.now = func() time.Time {
		if clock.IsZero() {
			return time.Now()
		}
		return clock
	}
	sc, err := ca.ServingCert(Dir(dataDir), "registry", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	c1, err := sc.GetCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	c2, _ := sc.GetCertificate(nil)
	if c1 != c2 {
		t.Fatal("a fresh certificate was re-issued")
	}
	clock = c1.Leaf.NotAfter.Add(-10 * 24 * time.Hour)
	c3, err := sc.GetCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	if c3.Leaf.SerialNumber.Cmp(c1.Leaf.SerialNumber) == 0 {
		t.Fatal("a certificate ten days from expiry was served without renewal")
	}
	if !c3.Leaf.NotAfter.After(clock.Add(300 * 24 * time.Hour)) {
		t.Fatalf("renewed certificate expires %v", c3.Leaf.NotAfter)
	}
	onDisk, err := LoadKeyPair(Dir(dataDir), "registry")
	if err != nil || onDisk.Leaf.SerialNumber.Cmp(c3.Leaf.SerialNumber) != 0 {
		t.Fatalf("the renewed certificate is not on disk: %v", err)
	}
}

// TestTLSHandshakes runs real handshakes against a server configured with
// ServerTLS and clients configured with ClientTLS.
func TestTLSHandshakes(t *testing.T) {
	ca, dataDir := newTestCA(t)
	sc, err := ca.ServingCert(Dir(dataDir), "apiserver", "localhost", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	url := serveTLS(t, ServerTLS(ca.Pool(), sc.GetCertificate), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if node, ok := NodeFromTLS(r.TLS); ok {
			io.WriteString(w, "node:"+node)
			return
		}
		io.WriteString(w, "anonymous")
	}))

	other, _ := newTestCA(t)
	for _, tc := range []struct {
		name    string
		caPEM   []byte
		cert    func(t *testing.T) *tls.Certificate
		want    string
		wantErr string
	}{
		{"a client that trusts the CA connects without a certificate", ca.CertPEM(), nil, "anonymous", ""},
		{"a client that trusts another CA is refused", other.CertPEM(), nil, "", "certificate signed by unknown authority"},
		{"a node certificate identifies the node", ca.CertPEM(), func(t *testing.T) *tls.Certificate { return nodeCert(t, ca, "worker-1") }, "node:worker-1", ""},
		{"a node certificate from another CA is refused", ca.CertPEM(), func(t *testing.T) *tls.Certificate { return nodeCert(t, other, "worker-1") }, "", "tls"},
		{"a server certificate cannot act as a client", ca.CertPEM(), func(t *testing.T) *tls.Certificate {
			c, err := ca.IssueServer([]string{"evil"}, nil)
			if err != nil {
				t.Fatal(err)
			}
			return &c
		}, "", "tls"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var cert *tls.Certificate
			if tc.cert != nil {
				cert = tc.cert(t)
			}
			cfg, err := ClientTLS(tc.caPEM, cert)
			if err != nil {
				t.Fatal(err)
			}
			if cert != nil {
				// Present the certificate whatever CAs the server
				// names, as an attacker would: Go's client would
				// otherwise hold back one the server cannot accept.
				cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
			}
			cl := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
			defer cl.CloseIdleConnections()
			resp, err := cl.Get(strings.Replace(url, "127.0.0.1", "localhost", 1))
			if tc.wantErr != "" {
				if err == nil {
					resp.Body.Close()
					t.Fatalf("request succeeded, want an error containing %q", tc.wantErr)
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want %q", err, tc.wantErr)
				}
				t.Logf("refused: %v", err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if string(b) != tc.want {
				t.Fatalf("server saw %q, want %q", b, tc.want)
			}
		})
	}
	t.Run("ClientTLS refuses a PEM without a certificate", func(t *testing.T) {
		if _, err := ClientTLS([]byte("nothing"), nil); err == nil {
			t.Fatal("accepted")
		}
	})
}

// serveTLS serves h over TLS with cfg on a loopback port until the test
// ends and returns the base URL (https://127.0.0.1:PORT).
func serveTLS(t *testing.T, cfg *tls.Config, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ErrorLog: log.New(io.Discard, "", 0)}
	go srv.Serve(tls.NewListener(ln, cfg))
	t.Cleanup(func() { srv.Close() })
	return "https://" + ln.Addr().String()
}

// A route's certificate carries the route mark, which the clients of the
// API server refuse; one issued before the mark existed (marked as the
// platform's) is issued again instead of served.
func TestRouteServingCertIsMarked(t *testing.T) {
	ca, err := LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	old, err := ca.EnsureServerCert(dir, "route-localhost", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(old.Leaf.Subject.Organization, []string{PlatformOrganization}) {
		t.Fatalf("platform certificate marked %v", old.Leaf.Subject.Organization)
	}
	sc, err := ca.RouteServingCert(dir, "route-localhost", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	c, err := sc.GetCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.Leaf.Subject.Organization, []string{RouteOrganization}) || c.Leaf.SerialNumber.Cmp(old.Leaf.SerialNumber) == 0 {
		t.Fatalf("route certificate: marked %v, serial kept %v; want a new one marked %s", c.Leaf.Subject.Organization,
			c.Leaf.SerialNumber.Cmp(old.Leaf.SerialNumber) == 0, RouteOrganization)
	}
	if err := RefuseNodeListeners(tls.ConnectionState{PeerCertificates: []*x509.Certificate{c.Leaf}}); !errors.Is(err, ErrRouteCert) {
		t.Fatalf("API client check of a route certificate: %v; want ErrRouteCert", err)
	}
	if err := RefuseNodeListeners(tls.ConnectionState{PeerCertificates: []*x509.Certificate{old.Leaf}}); err != nil {
		t.Fatalf("API client check of the platform's certificate: %v", err)
	}
	// The API server, as the agents' client, refuses a route's
	// certificate and takes a node listener's.
	if err := RefuseRoutes(tls.ConnectionState{PeerCertificates: []*x509.Certificate{c.Leaf}}); !errors.Is(err, ErrRouteCert) {
		t.Fatalf("agent client check of a route certificate: %v; want ErrRouteCert", err)
	}
	key, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	nodePEM, err := ca.SignServer(key.Public(), []string{"n1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	node, err := ParseCert(nodePEM)
	if err != nil {
		t.Fatal(err)
	}
	if err := RefuseRoutes(tls.ConnectionState{PeerCertificates: []*x509.Certificate{node}}); err != nil {
		t.Fatalf("agent client check of a node listener's certificate: %v", err)
	}
}

package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// nodeCert runs the agent and server halves of the CSR flow and returns
// the node's TLS certificate.
func nodeCert(t *testing.T, ca *CA, node string) *tls.Certificate {
	t.Helper()
	key, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	csr, err := NodeCSR(node, key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := ca.SignNodeCSR(csr, node)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := EncodeKey(key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return &c
}

func TestNodeCertificateFromCSR(t *testing.T) {
	ca, _ := newTestCA(t)
	c := nodeCert(t, ca, "worker-7").Leaf
	if c.Subject.CommonName != "system:node:worker-7" || len(c.Subject.Organization) != 1 || c.Subject.Organization[0] != "gantry:nodes" {
		t.Fatalf("subject %v", c.Subject)
	}
	if err := ca.Verify(c, x509.ExtKeyUsageClientAuth); err != nil {
		t.Fatalf("not a valid client certificate: %v", err)
	}
	if err := ca.Verify(c, x509.ExtKeyUsageServerAuth); err == nil {
		t.Fatal("a node certificate verifies as a server certificate")
	}
	if len(c.DNSNames)+len(c.IPAddresses) != 0 {
		t.Fatal("a node certificate carries alternative names")
	}
	if life := c.NotAfter.Sub(c.NotBefore); life < NodeValidity || life > NodeValidity+time.Hour {
		t.Fatalf("valid for %v", life)
	}
	node, ok := NodeFromCert(c)
	if !ok || node != "worker-7" {
		t.Fatalf("NodeFromCert = %q, %v", node, ok)
	}
}

func TestVerifyNodeCSRRefusals(t *testing.T) {
	key, _ := NewKey()
	good, err := NodeCSR("n1", key)
	if err != nil {
		t.Fatal(err)
	}
	csrWith := func(t *testing.T, tmpl *x509.CertificateRequest, signer any) []byte {
		t.Helper()
		der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, signer)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	}
	nodeSubject := pkix.Name{CommonName: "system:node:n1", Organization: []string{"gantry:nodes"}}
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	for _, tc := range []struct {
		name string
		csr  func(t *testing.T) []byte
		node string
	}{
		{"a request for another node", func(*testing.T) []byte { return good }, "n2"},
		{"a request with a broken signature", func(*testing.T) []byte {
			blk, _ := pem.Decode(good)
			blk.Bytes[len(blk.Bytes)-3] ^= 0xff
			return pem.EncodeToMemory(blk)
		}, "n1"},
		{"a request that asks for DNS names", func(t *testing.T) []byte {
			return csrWith(t, &x509.CertificateRequest{Subject: nodeSubject, DNSNames: []string{"api.gantry"}}, key)
		}, "n1"},
		{"a request that asks for IP addresses", func(t *testing.T) []byte {
			return csrWith(t, &x509.CertificateRequest{Subject: nodeSubject, IPAddresses: []net.IP{net.ParseIP("10.0.0.1")}}, key)
		}, "n1"},
		{"a request for another organization", func(t *testing.T) []byte {
			return csrWith(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "system:node:n1", Organization: []string{"system:masters"}}}, key)
		}, "n1"},
		{"a request with a 1024-bit RSA key", func(t *testing.T) []byte {
			return csrWith(t, &x509.CertificateRequest{Subject: nodeSubject}, weak)
		}, "n1"},
		{"a request with a P-224 key", func(t *testing.T) []byte {
			return csrWith(t, &x509.CertificateRequest{Subject: nodeSubject}, p224)
		}, "n1"},
		{"a certificate instead of a request", func(t *testing.T) []byte {
			return []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
		}, "n1"},
		{"garbage", func(*testing.T) []byte { return []byte("hello") }, "n1"},
		{"a node name that is not a DNS label", func(*testing.T) []byte { return good }, "N1/../x"},
	} {
		t.Run(tc.name+" is refused", func(t *testing.T) {
			_, err := VerifyNodeCSR(tc.csr(t), tc.node)
			if !errors.Is(err, v1.ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid", err)
			}
		})
	}
	t.Run("the good request is accepted", func(t *testing.T) {
		if _, err := VerifyNodeCSR(good, "n1"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a request without organization is accepted and gets it", func(t *testing.T) {
		ca, _ := newTestCA(t)
		csr := csrWith(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "system:node:n1"}}, key)
		certPEM, err := ca.SignNodeCSR(csr, "n1")
		if err != nil {
			t.Fatal(err)
		}
		c, _ := ParseCert(certPEM)
		if node, ok := NodeFromCert(c); !ok || node != "n1" {
			t.Fatalf("NodeFromCert = %q, %v", node, ok)
		}
	})
}

func TestNodeFromCertOnlyTrustsNodeCertificates(t *testing.T) {
	ca, _ := newTestCA(t)
	srv, _ := ca.IssueServer([]string{"system:node:x"}, nil)
	key, _ := NewKey()
	issue := func(t *testing.T, subj pkix.Name, eku ...x509.ExtKeyUsage) *x509.Certificate {
		t.Helper()
		c, err := ca.sign(&x509.Certificate{Subject: subj, ExtKeyUsage: eku}, key.Public(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	for _, tc := range []struct {
		name string
		c    func(t *testing.T) *x509.Certificate
	}{
		{"nil", func(*testing.T) *x509.Certificate { return nil }},
		{"a server certificate", func(*testing.T) *x509.Certificate { return srv.Leaf }},
		{"a node name without the nodes organization", func(t *testing.T) *x509.Certificate {
			return issue(t, pkix.Name{CommonName: "system:node:x"}, x509.ExtKeyUsageClientAuth)
		}},
		{"a node subject without client authentication", func(t *testing.T) *x509.Certificate {
			return issue(t, pkix.Name{CommonName: "system:node:x", Organization: []string{NodeOrganization}}, x509.ExtKeyUsageServerAuth)
		}},
		{"a user name in the nodes organization", func(t *testing.T) *x509.Certificate {
			return issue(t, pkix.Name{CommonName: "alice", Organization: []string{NodeOrganization}}, x509.ExtKeyUsageClientAuth)
		}},
		{"an invalid node name", func(t *testing.T) *x509.Certificate {
			return issue(t, pkix.Name{CommonName: "system:node:", Organization: []string{NodeOrganization}}, x509.ExtKeyUsageClientAuth)
		}},
	} {
		t.Run(tc.name+" names no node", func(t *testing.T) {
			if node, ok := NodeFromCert(tc.c(t)); ok {
				t.Fatalf("got node %q", node)
			}
		})
	}
	t.Run("an unverified certificate in a connection names no node", func(t *testing.T) {
		c := nodeCert(t, ca, "n1").Leaf
		cs := &tls.ConnectionState{PeerCertificates: []*x509.Certificate{c}}
		if node, ok := NodeFromTLS(cs); ok {
			t.Fatalf("got node %q from a certificate nobody verified", node)
		}
		if _, ok := NodeFromTLS(nil); ok {
			t.Fatal("nil connection state names a node")
		}
		cs.VerifiedChains = [][]*x509.Certificate{{c, ca.Certificate()}}
		if node, ok := NodeFromTLS(cs); !ok || node != "n1" {
			t.Fatalf("verified chain: %q %v", node, ok)
		}
	})
}

func TestIssueNodeRefusesBadInput(t *testing.T) {
	ca, _ := newTestCA(t)
	key, _ := NewKey()
	if _, err := ca.IssueNode("Bad_Name", key.Public()); !errors.Is(err, v1.ErrInvalid) {
		t.Fatalf("bad name: %v", err)
	}
	if _, err := ca.IssueNode("ok", "not a key"); err == nil || !strings.Contains(err.Error(), "unsupported public key") {
		t.Fatalf("bad key: %v", err)
	}
}

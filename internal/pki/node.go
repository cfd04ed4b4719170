package pki

import (
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"slices"
	"strings"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// Node identity in certificates. The common name matches the user name
// node credentials act as (auth.NodeUser).
const (
	NodeCNPrefix     = "system:node:"
	NodeOrganization = "gantry:nodes"
)

// NodeCommonName is the subject common name of a node's certificate.
func NodeCommonName(node string) string { return NodeCNPrefix + node }

func validNodeName(node string) error {
	if msg := v1.ValidateName(node, 63); msg != "" {
		return fmt.Errorf("%w: node name %q %s", v1.ErrInvalid, node, msg)
	}
	return nil
}

// IssueNode issues the client certificate of a node for its public key,
// valid for NodeValidity. The certificate is good for client
// authentication only: a node cannot serve as the API server with it.
func (ca *CA) IssueNode(nodeName string, pub crypto.PublicKey) (certPEM []byte, err error) {
	if err := validNodeName(nodeName); err != nil {
		return nil, err
	}
	leaf, err := ca.sign(&x509.Certificate{
		Subject:     pkix.Name{CommonName: NodeCommonName(nodeName), Organization: []string{NodeOrganization}},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, pub, NodeValidity)
	if err != nil {
		return nil, fmt.Errorf("issue certificate of node %s: %w", nodeName, err)
	}
	return encodeCert(leaf.Raw), nil
}

// NodeCSR makes the certificate signing request an agent sends to join:
// it names the node and proves the agent holds key.
func NodeCSR(nodeName string, key crypto.Signer) (csrPEM []byte, err error) {
	if err := validNodeName(nodeName); err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: NodeCommonName(nodeName), Organization: []string{NodeOrganization}},
	}, key)
	if err != nil {
		return nil, fmt.Errorf("certificate request: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// VerifyNodeCSR checks a node's certificate signing request: well formed,
// signed by the key it carries, naming nodeName and nothing else, with an
// acceptable key. Errors wrap v1.ErrInvalid.
func VerifyNodeCSR(csrPEM []byte, nodeName string) (*x509.CertificateRequest, error) {
	if err := validNodeName(nodeName); err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(csrPEM)
	if blk == nil || blk.Type != "CERTIFICATE REQUEST" {
		return nil, fmt.Errorf("%w: no PEM certificate request", v1.ErrInvalid)
	}
	csr, err := x509.ParseCertificateRequest(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: certificate request: %v", v1.ErrInvalid, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: certificate request signature: %v", v1.ErrInvalid, err)
	}
	if want := NodeCommonName(nodeName); csr.Subject.CommonName != want {
		return nil, fmt.Errorf("%w: certificate request names %q, want %q", v1.ErrInvalid, csr.Subject.CommonName, want)
	}
	if o := csr.Subject.Organization; len(o) > 1 || (len(o) == 1 && o[0] != NodeOrganization) {
		return nil, fmt.Errorf("%w: certificate request asks for organization %q", v1.ErrInvalid, o)
	}
	// Names beyond the subject are refused rather than ignored, so a
	// request that hopes for more than a node identity is noticed.
	if len(csr.DNSNames)+len(csr.IPAddresses)+len(csr.EmailAddresses)+len(csr.URIs) > 0 {
		return nil, fmt.Errorf("%w: a node certificate request may not ask for alternative names", v1.ErrInvalid)
	}
	if err := checkPublicKey(csr.PublicKey); err != nil {
		return nil, fmt.Errorf("%w: %v", v1.ErrInvalid, err)
	}
	return csr, nil
}

// SignNodeCSR verifies a node's certificate signing request and issues its
// certificate. Only the public key is taken from the request; everything
// else the certificate says is Gantry's.
func (ca *CA) SignNodeCSR(csrPEM []byte, nodeName string) (certPEM []byte, err error) {
	csr, err := VerifyNodeCSR(csrPEM, nodeName)
	if err != nil {
		return nil, err
	}
	return ca.IssueNode(nodeName, csr.PublicKey)
}

// NodeFromCert returns the node a certificate names, if it is a node
// certificate. It does not verify the certificate: call it only on one
// that has been verified against the CA, or use NodeFromTLS.
func NodeFromCert(c *x509.Certificate) (string, bool) {
	if c == nil || !slices.Contains(c.Subject.Organization, NodeOrganization) ||
		!slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		return "", false
	}
	node, ok := strings.CutPrefix(c.Subject.CommonName, NodeCNPrefix)
	if !ok || validNodeName(node) != nil {
		return "", false
	}
	return node, true
}

// NodeFromTLS returns the node identity of a TLS peer whose certificate
// the handshake verified against the client CAs (see ServerTLS). A
// certificate that was merely presented does not count.
func NodeFromTLS(cs *tls.ConnectionState) (string, bool) {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return "", false
	}
	return NodeFromCert(cs.VerifiedChains[0][0])
}

package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base32"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Validity periods and the renewal window.
const (
	CAValidity     = 10 * 365 * 24 * time.Hour
	ServerValidity = 365 * 24 * time.Hour
	NodeValidity   = 365 * 24 * time.Hour
	// RenewBefore is how long before expiry a certificate is renewed.
	RenewBefore = 30 * 24 * time.Hour
	// clockSkew backdates certificates so that a peer whose clock is a
	// little behind does not reject a certificate just issued.
	clockSkew = 5 * time.Minute
)

// Dir is where a data directory keeps the CA and the server certificates.
func Dir(dataDir string) string { return filepath.Join(dataDir, "pki") }

// CA is the cluster's certificate authority. It is safe for concurrent use.
type CA struct {
	cert    *x509.Certificate
	certPEM []byte
	key     crypto.Signer
	now     func() time.Time
}

// LoadOrCreateCA loads the CA from pki/ca.crt and pki/ca.key under
// dataDir, making a new one on first start. A key file that group or
// others may access is refused.
func LoadOrCreateCA(dataDir string) (*CA, error) {
	return loadOrCreateCA(dataDir, time.Now)
}

func loadOrCreateCA(dataDir string, now func() time.Time) (*CA, error) {
	dir := Dir(dataDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pki directory: %w", err)
	}
	keyPath, certPath := filepath.Join(dir, "ca.key"), filepath.Join(dir, "ca.crt")
	ca := &CA{now: now}

	// What is there, links included: a link whose target is missing (a
	// volume not mounted yet) is a CA to wait for, not a first start.
	haveKey, err := present(keyPath)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	haveCert, err := present(certPath)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	if haveCert && !haveKey {
		return nil, fmt.Errorf("CA certificate %s is there but its key %s is missing: restore ca.key from a backup; only if the CA is lost for good, move both away to make a new one (every node then rejoins)", certPath, keyPath)
	}

	if !haveKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generate CA key: %w", err)
		}
		keyPEM, err := EncodeKey(k)
		if err != nil {
			return nil, err
		}
		// The key goes to disk before any certificate names it.
		if err := writeFileNew(keyPath, keyPEM, 0o600); err != nil {
			return nil, fmt.Errorf("write CA key: %w", err)
		}
		ca.key = k
	} else {
		keyPEM, err := readPrivateFile(keyPath)
		if err != nil {
			return nil, fmt.Errorf("CA key: %w", dangling(keyPath, err))
		}
		if ca.key, err = ParseKey(keyPEM); err != nil {
			return nil, fmt.Errorf("CA key %s: %w", keyPath, err)
		}
	}

	var certPEM []byte
	if !haveCert {
		// First start, or a crash between writing the key and the
		// certificate: nothing can have been issued by a CA whose
		// certificate never reached the disk, so self-signing one now
		// loses nothing.
		if certPEM, err = ca.selfSign(); err != nil {
			return nil, err
		}
		if err := writeFileNew(certPath, certPEM, 0o644); err != nil {
			return nil, fmt.Errorf("write CA certificate: %w", err)
		}
	} else if certPEM, err = os.ReadFile(certPath); err != nil {
		return nil, fmt.Errorf("CA certificate: %w", dangling(certPath, err))
	}
	if err := ca.setCert(certPEM); err != nil {
		return nil, fmt.Errorf("CA certificate %s: %w", certPath, err)
	}
	return ca, nil
}

// present reports whether something, a link included, is at path.
func present(path string) (bool, error) {
	_, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// dangling explains a read that failed because path is a link to nothing.
func dangling(path string, err error) error {
	if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if to, lerr := os.Readlink(path); lerr == nil {
		return fmt.Errorf("%s links to %s, which does not exist (is its volume mounted?): %w", path, to, err)
	}
	return err
}

func (ca *CA) selfSign() ([]byte, error) {
	now := ca.now()
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	// The name carries part of the key's pin, so two clusters' CAs never
	// share a subject.
	spki, err := x509.MarshalPKIXPublicKey(ca.key.Public())
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(spki)
	pin := strings.ToLower(b32.EncodeToString(sum[:]))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "gantry-ca-" + pin[:12], Organization: []string{"gantry"}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		// Gantry's CA signs leaves only: no intermediate can be made
		// from it.
		MaxPathLen:     0,
		MaxPathLenZero: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, ca.key.Public(), ca.key)
	if err != nil {
		return nil, fmt.Errorf("self-sign CA: %w", err)
	}
	return encodeCert(der), nil
}

func (ca *CA) setCert(certPEM []byte) error {
	c, err := ParseCert(certPEM)
	if err != nil {
		return err
	}
	if !c.IsCA || c.KeyUsage&x509.KeyUsageCertSign == 0 {
		return errors.New("is not a CA certificate")
	}
	if !publicKeysEqual(c.PublicKey, ca.key.Public()) {
		return errors.New("does not match ca.key")
	}
	if now := ca.now(); now.After(c.NotAfter) {
		// TODO(pki): CA rotation is not built; until it is, the
		// operator re-creates the CA and re-joins the nodes.
		return fmt.Errorf("expired on %s; move pki/ca.* away to make a new CA, then re-join every node", c.NotAfter.Format(time.DateOnly))
	}
	ca.cert, ca.certPEM = c, encodeCert(c.Raw)
	return nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ea, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ea.Equal(b)
}

// Certificate returns the CA certificate.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// CertPEM returns the CA certificate in PEM, as the CLI config and agents
// carry it.
func (ca *CA) CertPEM() []byte { return bytes.Clone(ca.certPEM) }

// Pool returns a pool holding only the CA certificate.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// Pin identifies the CA by the SHA-256 of its public key, so that an agent
// holding a join token can check it talks to this cluster before it has
// the CA certificate.
func (ca *CA) Pin() string { return Pin(ca.cert) }

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// Pin is the pin of a certificate: the SHA-256 of its subject public key
// info, in lower-case unpadded base32 (52 characters).
func Pin(c *x509.Certificate) string {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return strings.ToLower(b32.EncodeToString(sum[:]))
}

func newSerial() (*big.Int, error) {
	// 128 random bits: unique without a counter to keep, and
	// unpredictable (CA/B Forum asks for at least 64).
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return s.Add(s, big.NewInt(1)), nil
}

// sign issues a leaf certificate for pub from tmpl, which sets the
// subject, usages and names; sign sets serial, validity (never past the
// CA's own) and basic constraints.
func (ca *CA) sign(tmpl *x509.Certificate, pub crypto.PublicKey, validity time.Duration) (*x509.Certificate, error) {
	if err := checkPublicKey(pub); err != nil {
		return nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := ca.now()
	tmpl.SerialNumber = serial
	tmpl.NotBefore = now.Add(-clockSkew)
	tmpl.NotAfter = now.Add(validity)
	if tmpl.NotAfter.After(ca.cert.NotAfter) {
		tmpl.NotAfter = ca.cert.NotAfter
	}
	tmpl.BasicConstraintsValid = true
	tmpl.IsCA = false
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		return nil, fmt.Errorf("sign certificate: %w", err)
	}
	return x509.ParseCertificate(der)
}

// IssueServer issues a server certificate with a new key for the given
// DNS names and IP addresses, valid for ServerValidity. The returned
// certificate carries the CA certificate after the leaf, so clients that
// pin the CA can find it.
func (ca *CA) IssueServer(names []string, ips []net.IP) (tls.Certificate, error) {
	return ca.issueServer(names, ips, PlatformOrganization)
}

func (ca *CA) issueServer(names []string, ips []net.IP, org string) (tls.Certificate, error) {
	key, err := NewKey()
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := ca.signServer(key.Public(), names, ips, org)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{leaf.Raw, ca.cert.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

// SignServer issues a server certificate for a key held elsewhere: an
// agent's listener. The caller decides the names: they must be the
// node's own, never taken from the requester. The certificate is marked
// as a node listener's (NodeListenerOrganization), and the clients of the
// API server and the registry refuse such a certificate whatever names
// it carries, so that a node (or whoever holds a join token) cannot pose
// as either.
func (ca *CA) SignServer(pub crypto.PublicKey, names []string, ips []net.IP) (certPEM []byte, err error) {
	leaf, err := ca.signServer(pub, names, ips, NodeListenerOrganization)
	if err != nil {
		return nil, err
	}
	return encodeCert(leaf.Raw), nil
}

func (ca *CA) signServer(pub crypto.PublicKey, names []string, ips []net.IP, org string) (*x509.Certificate, error) {
	if len(names) == 0 && len(ips) == 0 {
		return nil, errors.New("a server certificate needs at least one DNS name or IP address")
	}
	for _, n := range names {
		if n == "" || strings.ContainsAny(n, " /:") {
			return nil, fmt.Errorf("%q is not a DNS name", n)
		}
	}
	cn := ""
	if len(names) > 0 {
		cn = names[0]
	} else {
		cn = ips[0].String()
	}
	return ca.sign(&x509.Certificate{
		Subject:     pkix.Name{CommonName: cn, Organization: []string{org}},
		DNSNames:    names,
		IPAddresses: ips,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, pub, ServerValidity)
}

// NewKey makes an ECDSA P-256 private key.
func NewKey() (*ecdsa.PrivateKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	return k, nil
}

// Verify checks that c was issued by this CA for usage at the CA's
// current time.
func (ca *CA) Verify(c *x509.Certificate, usage x509.ExtKeyUsage) error {
	_, err := c.Verify(x509.VerifyOptions{Roots: ca.Pool(), CurrentTime: ca.now(), KeyUsages: []x509.ExtKeyUsage{usage}})
	return err
}

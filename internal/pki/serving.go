package pki

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// NeedsRenewal reports whether c expires within RenewBefore of now, or
// within a third of its lifetime for certificates shorter-lived than
// that window allows.
func NeedsRenewal(c *x509.Certificate, now time.Time) bool {
	window := RenewBefore
	if life := c.NotAfter.Sub(c.NotBefore); life < 3*RenewBefore {
		window = life / 3
	}
	return !now.Before(c.NotAfter.Add(-window))
}

// splitSANs sorts subject alternative names into DNS names and IPs,
// lower-cased, deduplicated and sorted so that two lists naming the same
// set compare equal.
func splitSANs(sans []string) (names []string, ips []net.IP) {
	for _, s := range sans {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if ip := net.ParseIP(s); ip != nil {
			if v4 := ip.To4(); v4 != nil {
				ip = v4
			}
			if !slices.ContainsFunc(ips, ip.Equal) {
				ips = append(ips, ip)
			}
			continue
		}
		s = strings.ToLower(s)
		if !slices.Contains(names, s) {
			names = append(names, s)
		}
	}
	slices.Sort(names)
	slices.SortFunc(ips, func(a, b net.IP) int { return strings.Compare(string(a.To16()), string(b.To16())) })
	return names, ips
}

func sameSANs(c *x509.Certificate, names []string, ips []net.IP) bool {
	cn := slices.Clone(c.DNSNames)
	for i := range cn {
		cn[i] = strings.ToLower(cn[i])
	}
	slices.Sort(cn)
	if !slices.Equal(cn, names) || len(c.IPAddresses) != len(ips) {
		return false
	}
	for _, ip := range ips {
		if !slices.ContainsFunc(c.IPAddresses, ip.Equal) {
			return false
		}
	}
	return true
}

// EnsureServerCert returns the server certificate kept as NAME.crt and
// NAME.key in dir, issuing a new one when there is none, when it is not
// this CA's, when its names differ from sans (DNS names and IP addresses,
// in any order) or when it needs renewal. Calls for the same name must not
// overlap (ServingCert serializes its own).
func (ca *CA) EnsureServerCert(dir, name string, sans ...string) (tls.Certificate, error) {
	return ca.ensureServerCert(dir, name, PlatformOrganization, sans)
}

func (ca *CA) ensureServerCert(dir, name, org string, sans []string) (tls.Certificate, error) {
	names, ips := splitSANs(sans)
	cert, err := LoadKeyPair(dir, name)
	switch {
	case err == nil:
		if ca.serverCertFits(&cert, org, names, ips) {
			return cert, nil
		}
	case errors.Is(err, ErrInsecureKeyFile):
		// A key others could read may have been copied: do not go on
		// serving with it, and do not quietly replace it either, as the
		// operator should learn of it.
		return tls.Certificate{}, err
	case !errors.Is(err, os.ErrNotExist):
		// Unreadable or mismatched files are replaced.
	}
	cert, err = ca.issueServer(names, ips, org)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("issue %s certificate: %w", name, err)
	}
	keyPEM, err := EncodeKey(cert.PrivateKey.(crypto.Signer))
	if err != nil {
		return tls.Certificate{}, err
	}
	chain := append(encodeCert(cert.Certificate[0]), ca.certPEM...)
	if err := WriteKeyPair(dir, name, chain, keyPEM); err != nil {
		return tls.Certificate{}, fmt.Errorf("write %s certificate: %w", name, err)
	}
	return cert, nil
}

func (ca *CA) serverCertFits(cert *tls.Certificate, org string, names []string, ips []net.IP) bool {
	leaf := cert.Leaf
	if leaf == nil {
		return false
	}
	// A certificate of another mark is issued again: route certificates
	// issued before routes had their own were marked as the platform's.
	return slices.Equal(leaf.Subject.Organization, []string{org}) &&
		ca.Verify(leaf, x509.ExtKeyUsageServerAuth) == nil &&
		sameSANs(leaf, names, ips) &&
		!NeedsRenewal(leaf, ca.now())
}

// ServingCert keeps a listener's certificate fresh: every handshake gets a
// certificate that is not about to expire, re-issued on the way when
// needed. Use its GetCertificate in a tls.Config.
type ServingCert struct {
	ca        *CA
	dir, name string
	org       string
	sans      []string

	mu   sync.Mutex
	cert *tls.Certificate
}

// ServingCert ensures the certificate NAME in dir (see EnsureServerCert)
// and returns a source that renews it while the server runs.
func (ca *CA) ServingCert(dir, name string, sans ...string) (*ServingCert, error) {
	return ca.servingCert(dir, name, PlatformOrganization, sans)
}

// RouteServingCert is ServingCert for an app's `tls: auto` route: the
// certificate is marked RouteOrganization, which the clients of the API
// server and the registry refuse, whatever host the route names.
func (ca *CA) RouteServingCert(dir, name, host string) (*ServingCert, error) {
	return ca.servingCert(dir, name, RouteOrganization, []string{host})
}

func (ca *CA) servingCert(dir, name, org string, sans []string) (*ServingCert, error) {
	c, err := ca.ensureServerCert(dir, name, org, sans)
	if err != nil {
		return nil, err
	}
	return &ServingCert{ca: ca, dir: dir, name: name, org: org, sans: slices.Clone(sans), cert: &c}, nil
}

// GetCertificate returns the current certificate, renewing it first when
// it needs renewal. If renewal fails the old certificate is served while
// it is still valid, and renewal is tried again on the next handshake.
func (s *ServingCert) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.ca.now()
	if !NeedsRenewal(s.cert.Leaf, now) {
		return s.cert, nil
	}
	c, err := s.ca.ensureServerCert(s.dir, s.name, s.org, s.sans)
	if err != nil {
		if now.Before(s.cert.Leaf.NotAfter) {
			return s.cert, nil
		}
		return nil, fmt.Errorf("renew %s certificate: %w", s.name, err)
	}
	s.cert = &c
	return s.cert, nil
}

package pki

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"slices"
	"sync"
)

// ServerCommonName and ServerOrganization name the API server when it
// acts as a client of agents (to forward logs and exec).
const (
	ServerCommonName   = "system:server"
	ServerOrganization = "gantry:servers"
)

// IssueServerClient issues the client certificate the API server presents
// to agents, with a new key.
func (ca *CA) IssueServerClient() (tls.Certificate, error) {
	key, err := NewKey()
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := ca.sign(&x509.Certificate{
		Subject:     pkix.Name{CommonName: ServerCommonName, Organization: []string{ServerOrganization}},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, key.Public(), ServerValidity)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("issue the server's client certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{leaf.Raw, ca.cert.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

// ServerClientCert holds the client certificate the API server presents to
// agents and issues a new one when it nears its end (NeedsRenewal), so a
// server that runs for longer than ServerValidity still reaches them.
type ServerClientCert struct {
	ca   *CA
	mu   sync.Mutex
	cert tls.Certificate
}

// NewServerClientCert issues the server's first client certificate.
func (ca *CA) NewServerClientCert() (*ServerClientCert, error) {
	c, err := ca.IssueServerClient()
	if err != nil {
		return nil, err
	}
	return &ServerClientCert{ca: ca, cert: c}, nil
}

// GetClientCertificate is for tls.Config: the certificate held, or a new
// one once that nears its end. A failed issue keeps the old one while it
// lasts.
func (s *ServerClientCert) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.ca.now()
	if NeedsRenewal(s.cert.Leaf, now) {
		c, err := s.ca.IssueServerClient()
		switch {
		case err == nil:
			s.cert = c
		case !now.Before(s.cert.Leaf.NotAfter):
			return nil, err
		}
	}
	c := s.cert
	return &c, nil
}

// The Organization of a server certificate the cluster CA signs says
// whose it is. Only PlatformOrganization's may speak for the API server
// or the registry.
const (
	// PlatformOrganization marks the API server's and registry's
	// certificates (IssueServer).
	PlatformOrganization = "gantry"
	// NodeListenerOrganization marks the server certificates of agents'
	// listeners (SignServer).
	NodeListenerOrganization = "gantry:node-listeners"
	// RouteOrganization marks the certificates of apps' `tls: auto`
	// routes (RouteServingCert): a tenant picks their host names, which
	// may be the API server's own.
	RouteOrganization = "gantry:routes"
)

// ErrNodeListener is the error of a TLS client that reached a node's
// listener where it expected the API server or the registry.
var ErrNodeListener = errors.New("the server presented a node agent's certificate, not the Gantry API server's or registry's: refusing it")

// ErrRouteCert is the error of a TLS client that reached an app's route
// where it expected the API server or the registry.
var ErrRouteCert = errors.New("the server presented the certificate of an app's route (tls: auto), not a Gantry server's or agent's: refusing it")

// RefuseRoutes is a tls.Config VerifyConnection for the API server as a
// client of agents: it refuses an app route's certificate, which a
// tenant may have had issued for a node's name or address.
func RefuseRoutes(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) > 0 && slices.Contains(cs.PeerCertificates[0].Subject.Organization, RouteOrganization) {
		return ErrRouteCert
	}
	return nil
}

// RefuseNodeListeners is a tls.Config VerifyConnection for clients of the
// API server and the registry: it refuses a peer whose certificate is a
// node listener's or an app route's, which the cluster CA also signs.
// (It does not demand PlatformOrganization: the same clients reach other
// registries, under other CAs.)
func RefuseNodeListeners(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) > 0 && slices.Contains(cs.PeerCertificates[0].Subject.Organization, NodeListenerOrganization) {
		return ErrNodeListener
	}
	return RefuseRoutes(cs)
}

// IsServer reports whether a verified TLS peer is a Gantry API server.
func IsServer(cs *tls.ConnectionState) bool {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return false
	}
	c := cs.VerifiedChains[0][0]
	return c.Subject.CommonName == ServerCommonName && slices.Contains(c.Subject.Organization, ServerOrganization) &&
		slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
}

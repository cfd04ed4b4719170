package pki

import (
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
)

// ServerTLS returns the tls.Config of a Gantry listener. Clients may
// present a certificate; if they do it must chain to clientCAs (and is
// then available to NodeFromTLS), and if they do not the connection goes
// on and the request is authenticated another way (a bearer token). One
// listener thus serves users and agents alike.
func ServerTLS(clientCAs *x509.CertPool, getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: getCert,
		ClientAuth:     tls.VerifyClientCertIfGiven,
		ClientCAs:      clientCAs,
	}
}

// StaticCert adapts a fixed certificate to ServerTLS.
func StaticCert(c tls.Certificate) func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &c, nil }
}

// ClientTLS returns the tls.Config of a client that trusts only the CA in
// caPEM, presenting cert when it is not nil (an agent's node certificate).
func ClientTLS(caPEM []byte, cert *tls.Certificate) (*tls.Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("no CA certificate in the given PEM")
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool, VerifyConnection: RefuseNodeListeners}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return cfg, nil
}

var errPinMismatch = errors.New("server certificate does not chain to the CA the join token names")

// PinnedClientTLS returns the tls.Config an agent uses for its join
// request, before it has the CA certificate: the server must present, after
// its leaf, a CA certificate whose pin is pin, and the leaf must be valid
// for host under that CA. host is the server's name or IP as dialled.
func PinnedClientTLS(pin, host string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// The standard verification needs roots the agent does not
		// have yet; VerifyConnection does the whole check instead,
		// and runs even on resumed sessions.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyPinned(cs.PeerCertificates, pin, host)
		},
	}
}

func verifyPinned(certs []*x509.Certificate, pin, host string) error {
	if len(certs) == 0 {
		return errors.New("server presented no certificate")
	}
	if err := RefuseNodeListeners(tls.ConnectionState{PeerCertificates: certs}); err != nil {
		return err
	}
	for _, c := range certs[1:] {
		if !c.IsCA || subtle.ConstantTimeCompare([]byte(Pin(c)), []byte(pin)) != 1 {
			continue
		}
		roots := x509.NewCertPool()
		roots.AddCert(c)
		_, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, DNSName: host, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		if err != nil {
			return fmt.Errorf("server certificate: %w", err)
		}
		return nil
	}
	return errPinMismatch
}

// CheckPin verifies that caPEM (as a join response returns it) is the CA
// the pin names.
func CheckPin(caPEM []byte, pin string) (*x509.Certificate, error) {
	c, err := ParseCert(caPEM)
	if err != nil {
		return nil, err
	}
	if !c.IsCA || subtle.ConstantTimeCompare([]byte(Pin(c)), []byte(pin)) != 1 {
		return nil, errPinMismatch
	}
	return c, nil
}

package server

import (
	"crypto/tls"
	"errors"
	"net"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/discovery"
	"github.com/gantry-dev/gantry/internal/pki"
)

// A tenant's `tls: auto` route for one of the API server's own names
// (localhost, 127.0.0.1, the server's hostname: all valid route hosts)
// gets a cluster-CA certificate. The CLI's and agents' TLS config
// (pki.ClientTLS) once accepted it as the API server's, so whoever could
// steer a client's connection to the ingress read its bearer token in the
// tenant's backend. Route certificates are marked, and refused there.
func TestRouteCertCannotPassForTheAPIServer(t *testing.T) {
	for _, host := range []string{"localhost", "127.0.0.1"} {
		c, ca := routeCertsFor(t, &discovery.Service{Namespace: "tenant", Name: "evil",
			Routes: []v1.Route{{Host: host, TLS: "auto"}}})
		cert, err := c.GetCertificate(host)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := pki.ClientTLS(ca.CertPEM(), nil)
		if err != nil {
			t.Fatal(err)
		}
		cfg.ServerName = host
		a, b := net.Pipe()
		go func() {
			s := tls.Server(a, &tls.Config{Certificates: []tls.Certificate{*cert}})
			s.Handshake()
			s.Close()
		}()
		cl := tls.Client(b, cfg)
		err = cl.Handshake()
		cl.Close()
		if !errors.Is(err, pki.ErrRouteCert) {
			t.Errorf("the CLI/agent TLS config accepted tenant route %q's tls: auto certificate as the API server's (%v)", host, err)
		}
	}
}

package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/discovery"
	"github.com/gantry-dev/gantry/internal/pki"
	"github.com/gantry-dev/gantry/internal/secrets"
	"github.com/gantry-dev/gantry/internal/store"
)

// routeCerts gives the ingress the certificate of a route's host: from
// the Secret the route names (keys tls.crt and tls.key), or, for
// `tls: auto`, one issued by the cluster CA (for development: clients must
// trust the cluster CA).
type routeCerts struct {
	src   discovery.Source
	store *store.Store
	codec *secrets.Codec
	ca    *pki.CA
	dir   string

	mu    sync.Mutex
	cache map[string]cachedCert
}

type cachedCert struct {
	cert   *tls.Certificate
	source string // "auto" or ns/secret@revision
	at     time.Time
}

func (c *routeCerts) GetCertificate(host string) (*tls.Certificate, error) {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	ns, tlsRef := routeTLS(c.src.Current().Services, host)
	if tlsRef == "" {
		return nil, fmt.Errorf("%w: no route with TLS for host %s", v1.ErrNotFound, host)
	}
	if tlsRef == "auto" {
		if c.ca == nil {
			return nil, fmt.Errorf("%w: tls: auto needs the cluster CA", v1.ErrUnavailable)
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if cc, ok := c.cache[host]; ok && cc.source == "auto" {
			return cc.cert, nil
		}
		cert, err := c.ca.EnsureServerCert(c.dir, "route-"+host, host)
		if err != nil {
			return nil, err
		}
		c.remember(host, &cert, "auto")
		return &cert, nil
	}
	sec, err := store.Get[*v1.Secret](context.Background(), c.store, ns, tlsRef)
	if err != nil {
		return nil, err
	}
	src := fmt.Sprintf("%s/%s@%d", ns, tlsRef, sec.Metadata.Revision)
	c.mu.Lock()
	if cc, ok := c.cache[host]; ok && cc.source == src {
		c.mu.Unlock()
		return cc.cert, nil
	}
	c.mu.Unlock()
	if sec.Sealed == nil || c.codec == nil {
		return nil, fmt.Errorf("%w: secret %s holds no certificate", v1.ErrNotFound, tlsRef)
	}
	data, err := c.codec.Open(ns, tlsRef, &secrets.SealedData{KeyID: sec.Sealed.KeyID, WrappedKey: sec.Sealed.WrappedKey, Nonce: sec.Sealed.Nonce, Ciphertext: sec.Sealed.Ciphertext})
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(data["tls.crt"], data["tls.key"])
	if err != nil {
		return nil, fmt.Errorf("secret %s: keys tls.crt and tls.key must hold a PEM certificate and key: %w", tlsRef, err)
	}
	c.mu.Lock()
	c.remember(host, &cert, src)
	c.mu.Unlock()
	return &cert, nil
}

// routeTLS finds the TLS setting of the route that serves host: an exact
// host first, then a wildcard one label up (*.example.com serves
// a.example.com), as the load balancer routes. Among routes of one host
// (on different paths) the first App by namespace/name that sets TLS
// wins, so the choice does not change from one handshake to the next.
func routeTLS(services map[string]*discovery.Service, host string) (ns, tlsRef string) {
	wild := ""
	if i := strings.IndexByte(host, '.'); i > 0 {
		wild = "*" + host[i:]
	}
	keys := slices.Sorted(maps.Keys(services))
	var wildNS, wildRef string
	for _, k := range keys {
		svc := services[k]
		for _, r := range svc.Routes {
			if r.TLS == "" {
				continue
			}
			switch h := strings.ToLower(r.Host); {
			case h == host && tlsRef == "":
				ns, tlsRef = svc.Namespace, r.TLS
			case h == wild && wildRef == "":
				wildNS, wildRef = svc.Namespace, r.TLS
			}
		}
	}
	if tlsRef != "" {
		return ns, tlsRef
	}
	return wildNS, wildRef
}

func (c *routeCerts) remember(host string, cert *tls.Certificate, src string) {
	if c.cache == nil {
		c.cache = map[string]cachedCert{}
	}
	c.cache[host] = cachedCert{cert: cert, source: src, at: time.Now()}
}

// loadBalancerIPs are the addresses app hostnames resolve to: the
// ingress's own, or loopback when it listens on every address.
func loadBalancerIPs(addr string) func() []net.IP {
	host, _, err := net.SplitHostPort(addr)
	ip := net.ParseIP(host)
	if err != nil || ip == nil || ip.IsUnspecified() {
		return nil // the DNS server answers with the address a query arrived on
	}
	return func() []net.IP { return []net.IP{ip} }
}

package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/discovery"
	"github.com/gantry-dev/gantry/internal/ingress"
	"github.com/gantry-dev/gantry/internal/pki"
	"github.com/gantry-dev/gantry/internal/secrets"
	"github.com/gantry-dev/gantry/internal/store"
)

// routeCerts gives the ingress the certificate of a route's host: from
// the Secret the route names (keys tls.crt and tls.key), or, for
// `tls: auto`, one issued by the cluster CA (for development: clients must
// trust the cluster CA).
//
// Certificates are kept by the route's host, not by the name a client
// asked for: a wildcard route (*.tenants.example.com) has one, whatever
// names clients send, so they cannot make the CA sign, or the cache keep,
// one certificate per name.
type routeCerts struct {
	src   discovery.Source
	store *store.Store
	codec *secrets.Codec
	ca    *pki.CA
	dir   string

	mu sync.Mutex
	// auto holds the issued certificates by route host; each renews
	// itself ahead of its expiry.
	auto map[string]*pki.ServingCert
	// fromSecret holds certificates read from Secrets, by route host.
	fromSecret map[string]secretCert
}

type secretCert struct {
	cert    *tls.Certificate
	source  string    // ns/secret@revision; ns/secret@ when err is set
	checked time.Time // when the Secret's revision was last read
	// err is why the Secret gave no certificate (cert is nil): kept for
	// secretRecheck too, so that handshakes for a host whose Secret is
	// missing or broken do not each read etcd.
	err error
}

// secretRecheck is how long a certificate from a Secret is served before
// the Secret's revision is read again: a handshake does not cost a read
// of etcd, and a replaced certificate is served within this time.
const secretRecheck = 5 * time.Second

func (c *routeCerts) GetCertificate(host string) (*tls.Certificate, error) {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	services := c.src.Current().Services
	ns, routeHost, tlsRef := routeTLS(services, host)
	if tlsRef == "" {
		return nil, fmt.Errorf("%w (%s): %w", ingress.ErrNoTLSRoute, host, v1.ErrNotFound)
	}
	if tlsRef == "auto" {
		return c.autoCert(services, routeHost)
	}
	return c.secretCert(services, ns, routeHost, tlsRef)
}

func (c *routeCerts) autoCert(services map[string]*discovery.Service, routeHost string) (*tls.Certificate, error) {
	if c.ca == nil {
		return nil, fmt.Errorf("%w: tls: auto needs the cluster CA", v1.ErrUnavailable)
	}
	c.mu.Lock()
	sc := c.auto[routeHost]
	if sc == nil {
		var err error
		if sc, err = c.ca.RouteServingCert(c.dir, certFileName(routeHost), routeHost); err != nil {
			c.mu.Unlock()
			return nil, err
		}
		c.forgetGone(services)
		if c.auto == nil {
			c.auto = map[string]*pki.ServingCert{}
		}
		c.auto[routeHost] = sc
	}
	c.mu.Unlock()
	return sc.GetCertificate(nil)
}

func (c *routeCerts) secretCert(services map[string]*discovery.Service, ns, routeHost, tlsRef string) (*tls.Certificate, error) {
	prefix := ns + "/" + tlsRef + "@"
	c.mu.Lock()
	cached, ok := c.fromSecret[routeHost]
	ok = ok && strings.HasPrefix(cached.source, prefix)
	if ok && cached.cert == nil {
		if time.Since(cached.checked) < secretRecheck {
			c.mu.Unlock()
			return nil, cached.err
		}
		ok = false // read it again, as the first time
	}
	if ok && time.Since(cached.checked) < secretRecheck {
		c.mu.Unlock()
		return cached.cert, nil
	}
	if ok {
		// This handshake reads the Secret again; the ones that come
		// meanwhile go on with the certificate they had, so a slow or
		// absent etcd delays one handshake every secretRecheck, not all.
		cached.checked = time.Now()
		c.fromSecret[routeHost] = cached
	}
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	// A Secret that holds no usable certificate: if one was cached from
	// before, it goes too, so every handshake fails alike (and the load
	// balancer logs why), rather than one in each secretRecheck while the
	// others get the old one.
	fail := func(err error) (*tls.Certificate, error) {
		c.mu.Lock()
		c.forgetGone(services)
		if c.fromSecret == nil {
			c.fromSecret = map[string]secretCert{}
		}
		c.fromSecret[routeHost] = secretCert{source: prefix, checked: time.Now(), err: err}
		c.mu.Unlock()
		return nil, err
	}
	sec, err := store.Get[*v1.Secret](ctx, c.store, ns, tlsRef)
	switch {
	case errors.Is(err, v1.ErrNotFound):
		return fail(err)
	case err != nil && ok:
		// etcd is slow or away: HTTPS goes on with what it had.
		return cached.cert, nil
	case err != nil:
		return nil, err
	}
	src := prefix + strconv.FormatInt(sec.Metadata.Revision, 10)
	if ok && cached.source == src {
		return cached.cert, nil
	}
	// The Secret changed, or is new to us.
	if sec.Sealed == nil || c.codec == nil {
		return fail(fmt.Errorf("%w: secret %s holds no certificate", v1.ErrNotFound, tlsRef))
	}
	data, err := c.codec.Open(ns, tlsRef, &secrets.SealedData{KeyID: sec.Sealed.KeyID, WrappedKey: sec.Sealed.WrappedKey, Nonce: sec.Sealed.Nonce, Ciphertext: sec.Sealed.Ciphertext})
	if err != nil {
		return fail(err)
	}
	cert, err := tls.X509KeyPair(data["tls.crt"], data["tls.key"])
	if err != nil {
		return fail(fmt.Errorf("secret %s: keys tls.crt and tls.key must hold a PEM certificate and key: %w", tlsRef, err))
	}
	c.mu.Lock()
	c.forgetGone(services)
	if c.fromSecret == nil {
		c.fromSecret = map[string]secretCert{}
	}
	c.fromSecret[routeHost] = secretCert{cert: &cert, source: src, checked: time.Now()}
	c.mu.Unlock()
	return &cert, nil
}

// forgetGone drops certificates of hosts no route serves with TLS any
// more. It runs when one is added, under c.mu.
func (c *routeCerts) forgetGone(services map[string]*discovery.Service) {
	live := map[string]bool{}
	for _, svc := range services {
		for _, r := range svc.Routes {
			if r.TLS != "" {
				live[strings.ToLower(r.Host)] = true
			}
		}
	}
	maps.DeleteFunc(c.auto, func(h string, _ *pki.ServingCert) bool { return !live[h] })
	maps.DeleteFunc(c.fromSecret, func(h string, _ secretCert) bool { return !live[h] })
}

// certFileName names the files of a route host's issued certificate.
// Hosts hold no "_", so a wildcard's cannot clash with another host's.
func certFileName(routeHost string) string {
	if rest, ok := strings.CutPrefix(routeHost, "*."); ok {
		return "route-_wildcard." + rest
	}
	return "route-" + routeHost
}

// routeTLS finds the TLS setting of the route that serves host, and that
// route's host: an exact host first, then a wildcard one label up
// (*.example.com serves a.example.com), as the load balancer routes.
// Among routes of one host (on different paths) the first App by
// namespace/name that sets TLS wins, so the choice does not change from
// one handshake to the next (the API refuses routes of one host that
// disagree on it). A host that has routes of its own never takes the
// wildcard's certificate, even when none of them sets TLS: the load
// balancer does not route it to the wildcard's App either.
func routeTLS(services map[string]*discovery.Service, host string) (ns, routeHost, tlsRef string) {
	wild := ""
	if i := strings.IndexByte(host, '.'); i > 0 {
		wild = "*" + host[i:]
	}
	keys := slices.Sorted(maps.Keys(services))
	var wildNS, wildRef string
	exact := false
	for _, k := range keys {
		svc := services[k]
		for _, r := range svc.Routes {
			h := strings.ToLower(r.Host)
			exact = exact || h == host
			if r.TLS == "" {
				continue
			}
			switch {
			case h == host && tlsRef == "":
				ns, tlsRef = svc.Namespace, r.TLS
			case h == wild && wildRef == "":
				wildNS, wildRef = svc.Namespace, r.TLS
			}
		}
	}
	if tlsRef != "" {
		return ns, host, tlsRef
	}
	if wildRef != "" && !exact {
		return wildNS, wild, wildRef
	}
	return "", "", ""
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

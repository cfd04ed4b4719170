package dns

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	miekg "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// Defaults used when a Config field is left zero.
const (
	DefaultDomain         = "gantry.internal"
	DefaultAppsDomain     = "localhost"
	DefaultTTL            = time.Second
	DefaultForwardTimeout = 2 * time.Second
	DefaultResolvConf     = "/etc/resolv.conf"
	// DefaultForwardBudget is less than the 5 s a glibc stub resolver
	// waits before it asks again, so that a client whose upstreams are
	// all dead gets our SERVFAIL rather than a timeout of its own.
	DefaultForwardBudget = 4 * time.Second
	// DefaultMaxConcurrentForwards bounds the goroutines a flood of
	// queries to a slow upstream can pin down.
	DefaultMaxConcurrentForwards = 1000
	// DefaultMaxUDPSize follows DNS Flag Day 2020: answers up to 1232
	// bytes avoid IP fragmentation on every common path MTU.
	DefaultMaxUDPSize = 1232
)

// DefaultForwardFrom are the clients forwarded for unless configured:
// loopback, and the private and link-local ranges containers and local
// networks live in (RFC 1918, RFC 6598 shared space, RFC 4193 unique
// local addresses).
var DefaultForwardFrom = []netip.Prefix{
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("fc00::/7"),
	netip.MustParsePrefix("fe80::/10"),
}

// Config configures a Server. The zero value is usable: every empty field
// takes its default in setDefaults.
type Config struct {
	// Domain is the cluster domain; services live under svc.Domain.
	Domain string `json:"domain,omitempty"`
	// AppsDomain is the domain whose every name resolves to the load
	// balancer. The default, localhost, needs no DNS set-up at all:
	// browsers and glibc already send *.localhost to loopback.
	AppsDomain string `json:"appsDomain,omitempty"`
	// TTL is the TTL of service and instance records and of negative
	// answers. It is short because readiness changes must be seen within
	// a second even through a caching resolver.
	TTL time.Duration `json:"ttl,omitempty"`
	// Upstreams are the resolvers ("ip" or "ip:port") that get every
	// query outside our zones. Nil means the nameservers of ResolvConf;
	// an empty non-nil slice disables forwarding (such queries are
	// REFUSED). Addresses this server listens on are skipped, so a host
	// whose resolv.conf points at Gantry does not loop.
	Upstreams []string `json:"upstreams,omitempty"`
	// ForwardFrom are the client networks whose queries for names
	// outside our zones are forwarded; other clients get REFUSED for
	// those names, and our zones still answer everyone. Nil means
	// DefaultForwardFrom, so a listener opened to the world does not
	// make an open resolver, which floods use to amplify their traffic;
	// an empty non-nil slice forwards for no one.
	ForwardFrom []netip.Prefix `json:"forwardFrom,omitempty"`
	// InstanceNetworks are the networks instances get their addresses
	// from (the cluster CIDR). A client inside them that no snapshot
	// lists (a container whose address is not reported yet, one of an
	// App just deleted) may belong to any namespace, so it is answered
	// as another namespace's instance: route hosts outside the apps
	// domain get the public answer. Nil counts every unlisted client as
	// no instance.
	InstanceNetworks []netip.Prefix `json:"instanceNetworks,omitempty"`
	// ResolvConf is read when Upstreams is nil.
	ResolvConf string `json:"resolvConf,omitempty"`
	// ForwardTimeout bounds one exchange with one upstream.
	ForwardTimeout time.Duration `json:"forwardTimeout,omitempty"`
	// ForwardBudget bounds one forwarded query over all the upstreams it
	// tries: each gets ForwardTimeout or what is left of the budget,
	// whichever is less, and the client gets SERVFAIL when it is spent.
	ForwardBudget time.Duration `json:"forwardBudget,omitempty"`
	// MaxConcurrentForwards is how many queries may wait on upstreams at
	// once; more get SERVFAIL at once instead of piling up.
	MaxConcurrentForwards int `json:"maxConcurrentForwards,omitempty"`
	// MaxUDPSize caps UDP answers below what the client advertises in
	// EDNS0; larger answers are truncated (TC) and the client retries
	// over TCP.
	MaxUDPSize int `json:"maxUDPSize,omitempty"`
	// LoadBalancer returns the ingress addresses that app hostnames
	// resolve to. It is called for each such query, so it must be cheap
	// and safe for concurrent use. Nil (or an empty result) answers with
	// the address the query arrived on (the bridge gateway for
	// containers, where the ingress of the same node listens too) when
	// that is known: always over TCP, over UDP when the listener is
	// bound to one address. A datagram to a wildcard listener gets the
	// address this host would answer the client from (its route back),
	// which on a host with one address per network is the one the
	// client queried.
	LoadBalancer func() []net.IP `json:"-"`
	// Listen are the addresses Run serves on, UDP and TCP each.
	Listen []string `json:"listen,omitempty"`
	// Registerer receives the server's metrics; nil registers nowhere.
	Registerer prometheus.Registerer `json:"-"`
}

// setDefaults fills the zero fields and checks the rest.
func (c *Config) setDefaults() error {
	if c.Domain == "" {
		c.Domain = DefaultDomain
	}
	if c.AppsDomain == "" {
		c.AppsDomain = DefaultAppsDomain
	}
	if c.TTL <= 0 {
		c.TTL = DefaultTTL
	}
	if c.ForwardTimeout <= 0 {
		c.ForwardTimeout = DefaultForwardTimeout
	}
	if c.ForwardBudget <= 0 {
		c.ForwardBudget = DefaultForwardBudget
	}
	if c.MaxConcurrentForwards <= 0 {
		c.MaxConcurrentForwards = DefaultMaxConcurrentForwards
	}
	from := c.ForwardFrom
	if from == nil {
		from = DefaultForwardFrom
	}
	// A copy, never nil: the caller's slice and the default stay theirs.
	c.ForwardFrom = make([]netip.Prefix, 0, len(from))
	for i, p := range from {
		if !p.IsValid() {
			return fmt.Errorf("dns: forwardFrom: entry %d is not a network; give one such as 10.0.0.0/8: %w", i, v1.ErrInvalid)
		}
		c.ForwardFrom = append(c.ForwardFrom, p.Masked())
	}
	// A copy, as ForwardFrom's.
	nets := make([]netip.Prefix, 0, len(c.InstanceNetworks))
	for i, p := range c.InstanceNetworks {
		if !p.IsValid() {
			return fmt.Errorf("dns: instanceNetworks: entry %d is not a network; give one such as 10.77.0.0/16: %w", i, v1.ErrInvalid)
		}
		nets = append(nets, p.Masked())
	}
	c.InstanceNetworks = nets
	if c.ResolvConf == "" {
		c.ResolvConf = DefaultResolvConf
	}
	if c.MaxUDPSize <= 0 {
		c.MaxUDPSize = DefaultMaxUDPSize
	}
	if c.MaxUDPSize < miekg.MinMsgSize {
		c.MaxUDPSize = miekg.MinMsgSize
	}
	if c.MaxUDPSize > miekg.MaxMsgSize {
		c.MaxUDPSize = miekg.MaxMsgSize
	}
	var err error
	if c.Domain, c.AppsDomain, err = CheckDomains(c.Domain, c.AppsDomain); err != nil {
		return fmt.Errorf("dns: %w", err)
	}
	return nil
}

// CheckDomains checks the cluster domain and the apps domain and returns
// them lower-cased and fully qualified ("gantry.internal."): what every
// part of Gantry that matches names against them must use, so that a
// value given with a trailing dot or in capitals means the same to all.
func CheckDomains(domain, apps string) (string, string, error) {
	var err error
	if domain, err = CanonicalZone(domain); err != nil {
		return "", "", fmt.Errorf("cluster domain: %w", err)
	}
	if apps, err = CanonicalZone(apps); err != nil {
		return "", "", fmt.Errorf("apps domain: %w", err)
	}
	if domain == apps {
		return "", "", fmt.Errorf("cluster domain and apps domain are both %q; give them different names: %w", domain, v1.ErrInvalid)
	}
	if svc := "svc." + domain; inZone(apps, svc) {
		return "", "", fmt.Errorf("apps domain %q lies within %q, where it would hide the service names; give another: %w", apps, svc, v1.ErrInvalid)
	}
	return domain, apps, nil
}

// CanonicalZone lower-cases a zone name and makes it fully qualified.
func CanonicalZone(z string) (string, error) {
	z = strings.ToLower(strings.TrimSpace(z))
	if z == "." || z == "" {
		return "", fmt.Errorf("the root zone cannot be served; give a domain such as %q: %w", DefaultDomain, v1.ErrInvalid)
	}
	z = miekg.Fqdn(z)
	if _, ok := miekg.IsDomainName(z); !ok {
		return "", fmt.Errorf("%q is not a domain name: %w", z, v1.ErrInvalid)
	}
	for _, l := range miekg.SplitDomainName(z) {
		if !isLabel(l) {
			return "", fmt.Errorf("%q is not a host name: use lower-case labels of letters, digits and '-': %w", z, v1.ErrInvalid)
		}
	}
	return z, nil
}

// upstreamsFrom returns the nameservers of a resolv.conf file as host:port.
func upstreamsFrom(path string) ([]string, error) {
	cc, err := miekg.ClientConfigFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("read upstream resolvers from %s: %w", path, err)
	}
	out := make([]string, 0, len(cc.Servers))
	for _, s := range cc.Servers {
		out = append(out, net.JoinHostPort(s, cc.Port))
	}
	return out, nil
}

// normalizeUpstream adds port 53 to a bare IP and checks the address. An
// IPv6 address may carry a zone (fe80::1%eth0), as resolv.conf files
// written by NetworkManager do.
func normalizeUpstream(u string) (string, error) {
	if ap, err := netip.ParseAddrPort(u); err == nil && ap.Port() != 0 {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String(), nil
	}
	bare := u
	if strings.HasPrefix(u, "[") && strings.HasSuffix(u, "]") {
		bare = u[1 : len(u)-1]
	}
	// A zone is any text after '%': one with a ']' or ':' in it was a
	// malformed IP:port, not an address.
	if a, err := netip.ParseAddr(bare); err == nil && !strings.ContainsAny(a.Zone(), "]:") {
		return netip.AddrPortFrom(a.Unmap(), 53).String(), nil
	}
	return "", fmt.Errorf("dns: upstream %q: want an IP or IP:port: %w", u, v1.ErrInvalid)
}

// isLabel reports whether l is a lower-case DNS-1123 label, the only kind
// of label we put into names we serve.
func isLabel(l string) bool {
	if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

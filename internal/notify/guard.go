package notify

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// ErrTargetRefused is wrapped by errors about addresses the guard refuses;
// it wraps v1.ErrForbidden so that the API maps it to 403.
var ErrTargetRefused = fmt.Errorf("%w: outbound target refused", v1.ErrForbidden)

// refusedPrefixes are the ranges a tenant's webhook must not reach unless
// an admin allows private targets for its namespace.
var refusedPrefixes = []struct {
	prefix netip.Prefix
	why    string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "this-network"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("10.0.0.0/8"), "private"},
	{netip.MustParsePrefix("172.16.0.0/12"), "private"},
	{netip.MustParsePrefix("192.168.0.0/16"), "private"},
	{netip.MustParsePrefix("100.64.0.0/10"), "shared address space"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("255.255.255.255/32"), "broadcast"},
	{netip.MustParsePrefix("::/128"), "unspecified"},
	{netip.MustParsePrefix("::1/128"), "loopback"},
	{netip.MustParsePrefix("fe80::/10"), "link-local"},
	{netip.MustParsePrefix("fc00::/7"), "private"},
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
	// Local-use NAT64 (RFC 8215) may embed an IPv4 address anywhere;
	// the well-known prefix and 6to4 are judged by the address they
	// carry (see Check).
	{netip.MustParsePrefix("64:ff9b:1::/48"), "NAT64 (local use)"},
}

var (
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
)

// Guard decides which addresses notifications may connect to. The zero
// Guard refuses the fixed private ranges only; NewGuard adds the API
// server's own addresses.
type Guard struct {
	server []netip.Addr
	// extra are ranges refused besides the fixed ones (RefuseNetwork).
	extra []struct {
		prefix netip.Prefix
		why    string
	}
}

// RefuseNetwork refuses the addresses of cidr too, named why in the
// refusal; an invalid cidr is ignored. It returns g.
func (g *Guard) RefuseNetwork(cidr, why string) *Guard {
	if p, err := netip.ParsePrefix(cidr); err == nil {
		g.extra = append(g.extra, struct {
			prefix netip.Prefix
			why    string
		}{p.Masked(), why})
	}
	return g
}

// NewGuard returns a guard that also refuses the API server's addresses.
// serverAddrs are its listen addresses (host:port or host); an
// unspecified or empty host (0.0.0.0, ::, ":7443") stands for every
// address of this machine, which are then all refused.
func NewGuard(serverAddrs ...string) *Guard {
	g := &Guard{}
	for _, a := range serverAddrs {
		host := a
		if h, _, err := net.SplitHostPort(a); err == nil {
			host = h
		}
		if host == "" {
			// net.Listen takes ":7443" for every interface; looked up
			// as a name, "" would add none of them.
			g.server = append(g.server, localAddrs()...)
			continue
		}
		ip, err := netip.ParseAddr(host)
		if err != nil {
			// A host name: resolve it once now; the server's own name
			// does not move the way a tenant's does.
			ips, lerr := net.DefaultResolver.LookupNetIP(context.Background(), "ip", host)
			if lerr == nil {
				for _, ip := range ips {
					g.server = append(g.server, ip.Unmap())
				}
			}
			continue
		}
		ip = ip.Unmap()
		if ip.IsUnspecified() {
			g.server = append(g.server, localAddrs()...)
			continue
		}
		g.server = append(g.server, ip)
	}
	return g
}

func localAddrs() []netip.Addr {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			out = append(out, p.Addr().Unmap())
		}
	}
	return out
}

// Check returns an error wrapping ErrTargetRefused if ip may not be
// reached from a namespace without allowPrivateTargets.
func (g *Guard) Check(ip netip.Addr) error {
	// A zone ("::1%lo") puts an address outside every prefix, while the
	// kernel connects to it all the same.
	ip = ip.WithZone("").Unmap()
	if !ip.IsValid() {
		return fmt.Errorf("%w: invalid address", ErrTargetRefused)
	}
	// A translator on the way turns these into the IPv4 address they
	// carry, which is what must be allowed (DNS64 gives every public
	// IPv4 host such an address on an IPv6-only network).
	if b := ip.As16(); nat64.Contains(ip) {
		if err := g.Check(netip.AddrFrom4([4]byte(b[12:16]))); err != nil {
			return fmt.Errorf("NAT64 address %s: %w", ip, err)
		}
		return nil
	} else if sixToFour.Contains(ip) {
		if err := g.Check(netip.AddrFrom4([4]byte(b[2:6]))); err != nil {
			return fmt.Errorf("6to4 address %s: %w", ip, err)
		}
		return nil
	}
	if ip.IsUnspecified() {
		return fmt.Errorf("%w: %s is an unspecified address", ErrTargetRefused, ip)
	}
	for _, r := range refusedPrefixes {
		if r.prefix.Contains(ip) {
			return fmt.Errorf("%w: %s is a %s address; a cluster admin can allow private targets with the namespace policy allowPrivateTargets", ErrTargetRefused, ip, r.why)
		}
	}
	if g != nil {
		for _, r := range g.extra {
			if r.prefix.Contains(ip) {
				return fmt.Errorf("%w: %s is in %s (%s); a cluster admin can allow private targets with the namespace policy allowPrivateTargets", ErrTargetRefused, ip, r.why, r.prefix)
			}
		}
		for _, s := range g.server {
			if s == ip {
				return fmt.Errorf("%w: %s is the API server's address", ErrTargetRefused, ip)
			}
		}
	}
	return nil
}

// control is a net.Dialer Control function: it runs after resolution,
// just before connect, with the address actually dialled, which is what
// defeats DNS rebinding.
func (g *Guard) control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: cannot parse dialled address %q", ErrTargetRefused, address)
	}
	return g.Check(ap.Addr())
}

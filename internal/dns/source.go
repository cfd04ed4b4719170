package dns

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// sourceCache answers "which of this host's addresses would a reply to
// client come from?", the kernel's route lookup, for datagrams that
// reached a wildcard socket: miekg/dns does not tell which address they
// were sent to, and the source the route picks is the one the client can
// reach us at (on a host with one address per network, the one it
// queried). Lookups are kept for ttl, so a client costs three system
// calls a ttl; at most max clients are kept.
type sourceCache struct {
	ttl time.Duration
	max int
	// route returns the local address for a destination; tests replace
	// it.
	route func(netip.Addr) (netip.Addr, error)

	mu sync.Mutex
	m  map[netip.Addr]sourceEntry
}

type sourceEntry struct {
	src     netip.Addr
	expires time.Time
}

func newSourceCache() *sourceCache {
	return &sourceCache{ttl: 30 * time.Second, max: 4096, route: routeSource, m: map[netip.Addr]sourceEntry{}}
}

// lookup returns the local address that routes to client.
func (c *sourceCache) lookup(client netip.Addr, now time.Time) (netip.Addr, error) {
	c.mu.Lock()
	e, ok := c.m[client]
	c.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.src, nil
	}
	src, err := c.route(client)
	if err != nil {
		return netip.Addr{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		for k, e := range c.m {
			if !now.Before(e.expires) {
				delete(c.m, k)
			}
		}
		if len(c.m) >= c.max {
			// Every entry is fresh: many clients at once. Starting
			// over costs each of them one more lookup.
			clear(c.m)
		}
	}
	c.m[client] = sourceEntry{src: src, expires: now.Add(c.ttl)}
	return src, nil
}

// routeSource asks the kernel which local address it would send from to
// reach dst: connecting a UDP socket picks the route and its source
// without sending anything.
func routeSource(dst netip.Addr) (netip.Addr, error) {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, 53)))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("dns: route to %s: %w", dst, err)
	}
	defer c.Close()
	la, ok := c.LocalAddr().(*net.UDPAddr)
	if !ok {
		return netip.Addr{}, fmt.Errorf("dns: route to %s: local address %v", dst, c.LocalAddr())
	}
	src := la.AddrPort().Addr().Unmap()
	if !src.IsValid() || src.IsUnspecified() {
		return netip.Addr{}, fmt.Errorf("dns: route to %s: no source address", dst)
	}
	return src, nil
}

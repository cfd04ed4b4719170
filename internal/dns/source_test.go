package dns

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	miekg "github.com/miekg/dns"
)

func TestSourceCache(t *testing.T) {
	c := newSourceCache()
	c.max = 2
	calls := 0
	c.route = func(dst netip.Addr) (netip.Addr, error) {
		calls++
		if dst.Is6() {
			return netip.Addr{}, errors.New("network is unreachable")
		}
		return netip.AddrFrom4([4]byte{192, 0, 2, dst.As4()[3]}), nil
	}
	now := time.Now()
	a, b, d := netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.2"), netip.MustParseAddr("198.51.100.3")
	steps := []struct {
		name      string
		client    netip.Addr
		after     time.Duration
		want      string
		wantCalls int
	}{
		{"first query asks the kernel", a, 0, "192.0.2.1", 1},
		{"the next is cached", a, time.Second, "192.0.2.1", 1},
		{"another client asks again", b, 0, "192.0.2.2", 2},
		{"after the ttl the route is looked up again", a, 30 * time.Second, "192.0.2.1", 3},
		{"a full cache makes room", d, 0, "192.0.2.3", 4},
		{"no route is an error, not an answer", netip.MustParseAddr("2001:db8::1"), 0, "", 5},
	}
	for _, s := range steps {
		now = now.Add(s.after)
		got, err := c.lookup(s.client, now)
		if s.want == "" {
			if err == nil {
				t.Errorf("%s: got %s, want an error", s.name, got)
			}
		} else if err != nil || got.String() != s.want {
			t.Errorf("%s: got %s, %v; want %s", s.name, got, err, s.want)
		}
		if calls != s.wantCalls {
			t.Errorf("%s: %d route lookups so far, want %d", s.name, calls, s.wantCalls)
		}
		if len(c.m) > c.max {
			t.Errorf("%s: %d entries kept, more than %d", s.name, len(c.m), c.max)
		}
	}
}

// hostIPv4 returns one of this host's IPv4 addresses other than
// loopback, or skips.
func hostIPv4(t *testing.T) netip.Addr {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap().Is4() && !ip.IsLoopback() && !ip.IsLinkLocalUnicast() {
				return ip.Unmap()
			}
		}
	}
	t.Skip("this host has no IPv4 address besides loopback")
	return netip.Addr{}
}

// A datagram to a wildcard listener asking for an app host gets the
// address the client reaches this host at, not 127.0.0.1 (unreachable
// from any other machine).
func TestWildcardListenerAnswersTheAddressTheClientReaches(t *testing.T) {
	host := hostIPv4(t)
	s, _ := newTestServer(t, Config{}, tableSnapshot())
	port := netip.MustParseAddrPort(serveOn(t, s, "0.0.0.0:0")).Port()
	for _, from := range []netip.Addr{host, netip.MustParseAddr("127.0.0.1")} {
		to := netip.AddrPortFrom(from, port).String()
		c := &miekg.Client{Net: "udp", Timeout: 2 * time.Second, Dialer: &net.Dialer{LocalAddr: &net.UDPAddr{IP: from.AsSlice()}}}
		q := new(miekg.Msg)
		q.SetQuestion("hello.default.localhost.", miekg.TypeA)
		r, _, err := c.Exchange(q, to)
		if err != nil {
			t.Fatalf("query from %s: %v", from, err)
		}
		if got := rdata(r.Answer); len(got) != 1 || got[0] != "A "+from.String() {
			t.Errorf("query from %s to the wildcard listener: answer %v, want [%s]", from, got, from)
		}
	}
}

package dns

import (
	"errors"
	"net"
	"net/netip"
	"testing"

	miekg "github.com/miekg/dns"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// askFrom sends one query through ServeDNS as if from remote.
func askFrom(t *testing.T, s *Server, remote net.Addr, name string, qtype uint16) *miekg.Msg {
	t.Helper()
	q := new(miekg.Msg)
	q.SetQuestion(name, qtype)
	w := &recorder{local: &net.UDPAddr{IP: net.IPv4(192, 0, 2, 53), Port: 53}, remote: remote}
	s.ServeDNS(w, q)
	if len(w.out) != 1 {
		t.Fatalf("%s from %v: got %d answers, want 1", name, remote, len(w.out))
	}
	m := new(miekg.Msg)
	if err := m.Unpack(w.out[0]); err != nil {
		t.Fatalf("%s from %v: unpack answer: %v", name, remote, err)
	}
	return m
}

// Names outside our zones are forwarded only for the configured client
// networks; everyone else gets REFUSED without RA, and our own zones and
// routes answer everyone.
func TestForwardOnlyForAllowedClients(t *testing.T) {
	udp := func(ip string) net.Addr { return &net.UDPAddr{IP: net.ParseIP(ip), Port: 40000} }
	tcp := func(ip string) net.Addr { return &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000} }
	for _, tc := range []struct {
		name    string
		from    []netip.Prefix
		remote  net.Addr
		forward bool
	}{
		{"default, loopback", nil, udp("127.0.0.1"), true},
		{"default, v4-mapped loopback over TCP", nil, tcp("::ffff:127.0.0.1"), true},
		{"default, container subnet", nil, udp("10.77.3.9"), true},
		{"default, private", nil, udp("192.168.1.20"), true},
		{"default, unique local v6", nil, udp("fd12::7"), true},
		{"default, public v4", nil, udp("203.0.113.9"), false},
		{"default, public v6", nil, tcp("2001:db8::9"), false},
		{"configured, inside", []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}, udp("203.0.113.9"), true},
		{"configured, loopback not listed", []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}, udp("127.0.0.1"), false},
		{"configured, unmasked prefix", []netip.Prefix{netip.MustParsePrefix("203.0.113.77/24")}, udp("203.0.113.9"), true},
		{"empty: no one", []netip.Prefix{}, udp("127.0.0.1"), false},
		{"no address", nil, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			good := startUpstream(t, miekg.RcodeSuccess)
			s, _ := newTestServer(t, Config{Upstreams: []string{good.addr}, ForwardFrom: tc.from}, tableSnapshot())

			m := askFrom(t, s, tc.remote, "example.test.", miekg.TypeA)
			want := miekg.RcodeRefused
			if tc.forward {
				want = miekg.RcodeSuccess
			}
			if m.Rcode != want || m.RecursionAvailable != tc.forward {
				t.Errorf("outside name: rcode %s RA %v, want %s RA %v", miekg.RcodeToString[m.Rcode], m.RecursionAvailable, miekg.RcodeToString[want], tc.forward)
			}
			if n := good.queries.Load(); tc.forward != (n > 0) {
				t.Errorf("upstream asked %d times; forwarding allowed: %v", n, tc.forward)
			}
			for _, name := range []string{"hello.default.svc.gantry.internal.", "hello.example.com.", "hello.default.localhost."} {
				m := askFrom(t, s, tc.remote, name, miekg.TypeA)
				if m.Rcode != miekg.RcodeSuccess || !m.Authoritative || len(m.Answer) == 0 {
					t.Errorf("%s: rcode %s AA %v, %d answers; our zones answer every client", name, miekg.RcodeToString[m.Rcode], m.Authoritative, len(m.Answer))
				}
			}
		})
	}
}

func TestForwardFromRejectsAnInvalidNetwork(t *testing.T) {
	c := Config{ForwardFrom: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), {}}}
	err := c.setDefaults()
	if !errors.Is(err, v1.ErrInvalid) {
		t.Fatalf("err = %v, want ErrInvalid", err)
	}
	if c := (Config{}); c.setDefaults() != nil || len(c.ForwardFrom) != len(DefaultForwardFrom) {
		t.Fatalf("default forwardFrom: %v", c.ForwardFrom)
	}
}

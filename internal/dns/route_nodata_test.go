package dns

import (
	"net"
	"testing"
	"time"

	miekg "github.com/miekg/dns"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// A route host whose load balancer has no address of the asked family
// gets an authoritative NODATA with an SOA, which resolvers can cache
// negatively (RFC 2308 2.2), like every other NODATA this server gives.
func TestRouteHostNodataHasSOA(t *testing.T) {
	h := svc("default", "hello", 1, "10.88.0.10")
	h.Routes = []v1.Route{{Host: "hello.example.com"}}
	s, _ := newTestServer(t, Config{
		LoadBalancer: func() []net.IP { return []net.IP{net.ParseIP("192.0.2.80")} },
	}, snapshot(3, h))
	m := ask(t, s, "hello.example.com.", miekg.TypeAAAA)
	if m.Rcode != miekg.RcodeSuccess || len(m.Answer) != 0 {
		t.Fatalf("unexpected %v", m)
	}
	if len(m.Ns) == 0 {
		t.Fatalf("authoritative NODATA for a route host without an SOA in the authority section:\n%v", m)
	}
}

// We are the authority for route hosts and the apps domain, so every type
// of such a name is answered by us, never forwarded: an HTTPS or SVCB
// record from upstream could send a browser past the load balancer (its
// address hints, h3 through ALPN). Types we hold nothing for are NODATA.
func TestRouteAndAppsHostsAnswerEveryTypeThemselves(t *testing.T) {
	up := startUpstream(t, miekg.RcodeSuccess)
	s, _ := newTestServer(t, Config{Upstreams: []string{up.addr}, ForwardTimeout: 500 * time.Millisecond}, tableSnapshot())
	for _, host := range []struct{ name, zone string }{
		{"hello.example.com.", "hello.example.com."},
		{"x.wild.example.org.", "x.wild.example.org."},
		{"hello.default.localhost.", "localhost."},
	} {
		for _, qtype := range []uint16{miekg.TypeHTTPS, miekg.TypeSVCB, miekg.TypeMX} {
			t.Run(host.name+" "+miekg.TypeToString[qtype]+" is our NODATA", func(t *testing.T) {
				m := ask(t, s, host.name, qtype)
				if m.Rcode != miekg.RcodeSuccess || !m.Authoritative || len(m.Answer) != 0 {
					t.Fatalf("want an authoritative NODATA:\n%v", m)
				}
				if len(m.Ns) != 1 || m.Ns[0].Header().Rrtype != miekg.TypeSOA || m.Ns[0].Header().Name != host.zone {
					t.Fatalf("authority %v, want the SOA of %s", m.Ns, host.zone)
				}
			})
		}
	}
	if n := up.queries.Load(); n != 0 {
		t.Errorf("upstream asked %d times about names we are the authority for", n)
	}
}

// The SOA that a route host's negative answers carry is its own, so a
// query for the SOA of that name gets it, in the answer section.
func TestRouteHostAnswersItsSOA(t *testing.T) {
	s, _ := newTestServer(t, Config{}, tableSnapshot())
	m := ask(t, s, "Hello.Example.com.", miekg.TypeSOA)
	if m.Rcode != miekg.RcodeSuccess || !m.Authoritative || len(m.Answer) != 1 || len(m.Ns) != 0 {
		t.Fatalf("want an authoritative answer with the SOA:\n%v", m)
	}
	if h := m.Answer[0].Header(); h.Rrtype != miekg.TypeSOA || h.Name != "Hello.Example.com." {
		t.Fatalf("answer %v, want the SOA of Hello.Example.com. (the question's case)", m.Answer[0])
	}
}

package dns

import (
	"net"
	"testing"

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

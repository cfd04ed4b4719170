package dns

import (
	"net"
	"testing"

	miekg "github.com/miekg/dns"

	"github.com/gantry-dev/gantry/internal/discovery"
)

// With the default apps domain (localhost), the name localhost. itself was
// answered with the load balancer's address (the bridge gateway for a
// container with the default wildcard ingress), where RFC 6761 6.3 wants
// the loopback address. The apps zone's apex holds no App, so it answers
// loopback now.
func TestLocalhostApexIsLoopback(t *testing.T) {
	s := tableServer(t)
	m := ask(t, s, "localhost.", miekg.TypeA)
	if len(m.Answer) == 0 {
		t.Fatalf("localhost. has no address:\n%v", m)
	}
	for _, rr := range m.Answer {
		if a, ok := rr.(*miekg.A); ok && !a.A.IsLoopback() {
			t.Fatalf("localhost. answers %v, not a loopback address", a.A)
		}
	}
}

// inZone compares presentation-format strings, where an escaped dot
// looks like a label boundary: "x\.gantry.internal." (the label
// "x.gantry" under internal.) is not in the cluster zone, and once got an
// authoritative NXDOMAIN with our SOA instead of being forwarded (REFUSED
// here, as the test server has no upstream).
func TestEscapedDotIsNotALabelBoundary(t *testing.T) {
	s := tableServer(t)
	m := ask(t, s, `x\.gantry.internal.`, miekg.TypeA)
	if m.Rcode == miekg.RcodeNameError || m.Authoritative {
		t.Fatalf("a name outside gantry.internal. answered as ours:\n%v", m)
	}
}

// A label with an escape in it below one of our zones is ours all the
// same (the zone is matched on the labels right of it): such names were
// forwarded upstream, leaking the private zone's names and getting a
// public, non-authoritative answer, or REFUSED without an upstream.
func TestEscapedLabelsBelowOurZones(t *testing.T) {
	s := tableServer(t)
	for _, name := range []string{
		`a\.b.hello.default.svc.gantry.internal.`, // the label "a.b" below a service
		`a\\.hello.default.svc.gantry.internal.`,  // the label `a\`, then a real dot
		`x\.default.svc.gantry.internal.`,
		`a\032b.gantry.internal.`, // a space in a label
	} {
		m := ask(t, s, name, miekg.TypeA)
		if m.Rcode != miekg.RcodeNameError || !m.Authoritative || len(m.Ns) != 1 || m.Ns[0].Header().Rrtype != miekg.TypeSOA {
			t.Errorf("%s: want an authoritative NXDOMAIN with the SOA, got:\n%v", name, m)
		}
	}
	// In the apps zone every name is the load balancer.
	m := ask(t, s, `a\.b.web.default.localhost.`, miekg.TypeA)
	if m.Rcode != miekg.RcodeSuccess || !m.Authoritative || len(m.Answer) == 0 {
		t.Errorf("a name with an escaped dot in the apps zone: want the load balancer, got:\n%v", m)
	}
	// Escapes elsewhere are still not ours: a label "gantry.internal"
	// under the root, or below a public name.
	for _, name := range []string{`gantry\.internal.`, `a\.gantry.internal.example.`} {
		m := ask(t, s, name, miekg.TypeA)
		if m.Rcode == miekg.RcodeNameError || m.Authoritative {
			t.Errorf("%s answered as ours:\n%v", name, m)
		}
	}
}

// An apps domain that covers the service names is refused: with
// AppsDomain svc.gantry.internal every APP.NS.svc name once answered the
// load balancer instead of the instances, silently.
func TestAppsDomainCannotShadowServiceNames(t *testing.T) {
	b := discovery.NewBroadcaster()
	b.Publish(tableSnapshot())
	s, err := New(Config{AppsDomain: "svc.gantry.internal", Upstreams: []string{},
		LoadBalancer: func() []net.IP { return []net.IP{net.ParseIP("192.0.2.80")} }}, b, nil)
	if err == nil {
		s.Close()
		t.Fatal("apps domain svc.gantry.internal accepted")
	}
	for _, apps := range []string{"x.default.svc.gantry.internal", "SVC.gantry.internal."} {
		if _, err := New(Config{AppsDomain: apps, Upstreams: []string{}}, b, nil); err == nil {
			t.Errorf("apps domain %q accepted", apps)
		}
	}
}

// A reverse name of an instance gets NODATA carrying an SOA owned by that
// very name (answerReverse), so the name claims to be a zone apex; asking
// it for that SOA gets the SOA, as route hosts do
// (TestRouteHostAnswersItsSOA). Before, the SOA query got NODATA whose
// authority section held the record it said did not exist.
func TestReverseNameAnswersItsSOA(t *testing.T) {
	s, _ := newTestServer(t, Config{}, tableSnapshot())
	m := ask(t, s, "10.0.88.10.in-addr.arpa.", miekg.TypeSOA)
	if m.Rcode != miekg.RcodeSuccess || len(m.Answer) != 1 || m.Answer[0].Header().Rrtype != miekg.TypeSOA {
		t.Fatalf("want the SOA in the answer section, got:\n%v", m)
	}
}

package dns

import (
	"net"
	"testing"

	miekg "github.com/miekg/dns"
)

// Until the discovery watcher has read the store, its broadcaster holds
// an empty snapshot (marked Initial), and internal/server opens the DNS
// listeners before that. Before, every service name got an authoritative
// NXDOMAIN with SOA serial 0 from it, which is final for a client and
// cached: containers that kept running across a server restart got "no
// such host" for services that exist. They now get SERVFAIL, and try
// again; an empty snapshot that was published is answered from as usual.
func TestClusterNamesAreSERVFAILBeforeTheFirstSnapshot(t *testing.T) {
	lb := net.ParseIP("192.0.2.80")
	up := startUpstream(t, miekg.RcodeSuccess)
	s, b := newTestServer(t, Config{LoadBalancer: func() []net.IP { return []net.IP{lb} }, Upstreams: []string{up.addr}}, nil)
	// A route host (example.test. in the snapshot published below) and an
	// instance's reverse name are not forwarded either: the public answer
	// would be cached past the load.
	for _, name := range []string{"hello.default.svc.gantry.internal.", "gantry.internal.", "example.test.", "10.0.88.10.in-addr.arpa."} {
		m := ask(t, s, name, miekg.TypeA)
		if m.Rcode != miekg.RcodeServerFailure || m.Authoritative {
			t.Fatalf("%s before the first snapshot: rcode %s aa=%v, want SERVFAIL without aa:\n%v",
				name, miekg.RcodeToString[m.Rcode], m.Authoritative, m)
		}
	}
	if n := up.queries.Load(); n != 0 {
		t.Fatalf("%d queries forwarded before the first snapshot", n)
	}
	// App hostnames do not depend on the snapshot.
	if m := ask(t, s, "hello.default.localhost.", miekg.TypeA); len(m.Answer) != 1 || !m.Answer[0].(*miekg.A).A.Equal(lb) {
		t.Fatalf("app hostname before the first snapshot: %v, want the load balancer", m)
	}

	// The watcher publishes even when the store holds no App: then a
	// missing service is NXDOMAIN, at whatever revision.
	b.Publish(snapshot(0))
	if m := ask(t, s, "hello.default.svc.gantry.internal.", miekg.TypeA); m.Rcode != miekg.RcodeNameError || !m.Authoritative {
		t.Fatalf("after an empty snapshot: %v, want an authoritative NXDOMAIN", m)
	}
	b.Publish(snapshot(5, svc("default", "hello", 1, "10.88.0.10")))
	if m := ask(t, s, "hello.default.svc.gantry.internal.", miekg.TypeA); m.Rcode != miekg.RcodeSuccess || len(m.Answer) != 1 {
		t.Fatalf("after the first snapshot: %v, want the instance's address", m)
	}
}

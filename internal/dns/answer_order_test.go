package dns

import (
	"testing"

	miekg "github.com/miekg/dns"
)

// APP.NS.svc once answered its ready instances in one fixed order (sorted
// by instance name) on every query. Stub resolvers and clients take the
// first address (Go's resolver keeps DNS order for IPv4, most HTTP
// clients dial the first), so every in-cluster client of "hello" reached
// hello-0 and the other replicas got none of that traffic. Answers now
// rotate by a random number of places, as CoreDNS's loadbalance plugin
// (in Kubernetes' default Corefile) shuffles them: every address comes
// first now and then (200 queries leave one out with odds of 1e-24), and
// each answer holds every address once.
func TestServiceAddressesRotate(t *testing.T) {
	s, _ := newTestServer(t, Config{}, bigSnapshot(4))
	first := map[string]bool{}
	for i := 0; i < 200; i++ {
		m := ask(t, s, "big.default.svc.gantry.internal.", miekg.TypeA)
		if len(m.Answer) != 4 {
			t.Fatalf("want 4 addresses, got %v", m.Answer)
		}
		first[m.Answer[0].(*miekg.A).A.String()] = true
		seen := map[string]bool{}
		for _, rr := range m.Answer {
			seen[rr.(*miekg.A).A.String()] = true
		}
		if len(seen) != 4 {
			t.Fatalf("answer %v does not hold the 4 addresses once each", m.Answer)
		}
	}
	if len(first) != 4 {
		t.Fatalf("over 200 queries only %v came first; want each of the 4", first)
	}
}

// Answers once rotated on one counter shared by every name. A client that
// looks up two services of two replicas each in turn (a front end resolving
// its two back ends per request) moved the counter by two between its
// lookups of each, so each service always answered the same address first
// and all of that client's traffic to it went to one replica.
func TestRotationIsPerAnswerNotAGlobalTurn(t *testing.T) {
	s, _ := newTestServer(t, Config{}, snapshot(1,
		svc("default", "a", 2, "10.88.0.1", "10.88.0.2"),
		svc("default", "b", 2, "10.88.1.1", "10.88.1.2")))
	first := map[string]bool{}
	for i := 0; i < 64; i++ {
		m := ask(t, s, "a.default.svc.gantry.internal.", miekg.TypeA)
		first[m.Answer[0].(*miekg.A).A.String()] = true
		ask(t, s, "b.default.svc.gantry.internal.", miekg.TypeA)
	}
	if len(first) != 2 {
		t.Fatalf("over 64 lookups of a (each followed by one of b) only %v came first; want both replicas", first)
	}
}

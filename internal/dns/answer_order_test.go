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
// rotate, as with CoreDNS's loadbalance plugin (in Kubernetes' default
// Corefile): each address comes first in turn, and each answer holds
// every address once.
func TestServiceAddressesRotate(t *testing.T) {
	s, _ := newTestServer(t, Config{}, bigSnapshot(4))
	first := map[string]bool{}
	for i := 0; i < 20; i++ {
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
		t.Fatalf("over 20 queries only %v came first; want each of the 4", first)
	}
}

package dns

import (
	"testing"

	miekg "github.com/miekg/dns"
)

// TestAppsZoneInsideTheClusterZone checks RFC 8020 across the two zones:
// a name of the cluster zone with the apps zone below it exists (an empty
// non-terminal), so it is NODATA, never NXDOMAIN, which would tell a
// resolver that the apps zone below it does not exist either.
func TestAppsZoneInsideTheClusterZone(t *testing.T) {
	s, _ := newTestServer(t, Config{Domain: "gantry.internal", AppsDomain: "apps.east.gantry.internal"}, tableSnapshot())
	tests := []struct {
		name  string
		qname string
		rcode int
	}{
		{"the apps zone's parent is an empty non-terminal", "east.gantry.internal.", miekg.RcodeSuccess},
		{"it is so in any case", "EAST.Gantry.internal.", miekg.RcodeSuccess},
		{"a sibling of it does not exist", "west.gantry.internal.", miekg.RcodeNameError},
		{"a name beside the apps zone does not exist", "other.east.gantry.internal.", miekg.RcodeNameError},
		{"the apps zone answers for itself", "x.apps.east.gantry.internal.", miekg.RcodeSuccess},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := ask(t, s, tt.qname, miekg.TypeA)
			if m.Rcode != tt.rcode || !m.Authoritative {
				t.Fatalf("rcode %s AA %v, want %s and AA\n%v", miekg.RcodeToString[m.Rcode], m.Authoritative, miekg.RcodeToString[tt.rcode], m)
			}
			if len(m.Answer) == 0 && (len(m.Ns) != 1 || m.Ns[0].Header().Rrtype != miekg.TypeSOA) {
				t.Errorf("a negative answer without the zone's SOA:\n%v", m)
			}
		})
	}
}

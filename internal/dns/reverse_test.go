package dns

import (
	"net/netip"
	"testing"

	miekg "github.com/miekg/dns"
)

func TestReverseAddr(t *testing.T) {
	for _, tc := range []struct {
		name string
		want string // "" when not a whole address
	}{
		{"5.0.77.10.in-addr.arpa.", "10.77.0.5"},
		{"255.255.255.255.in-addr.arpa.", "255.255.255.255"},
		{"0.0.0.0.in-addr.arpa.", "0.0.0.0"},
		{"0.77.10.in-addr.arpa.", ""},           // a network, not an address
		{"1.5.0.77.10.in-addr.arpa.", ""},       // five labels
		{"256.0.77.10.in-addr.arpa.", ""},       // out of range
		{"05.0.77.10.in-addr.arpa.", ""},        // leading zero
		{"-5.0.77.10.in-addr.arpa.", ""},        // sign
		{"x.0.77.10.in-addr.arpa.", ""},         // not a number
		{"5..77.10.in-addr.arpa.", ""},          // empty label
		{"in-addr.arpa.", ""},                   // the zone itself
		{"5.0.77.10.in-addr.arpa.example.", ""}, // not under arpa
		{"5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.", "fd00::5"},
		{"b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.0.0.0.0.1.2.3.4.ip6.arpa.", "4321:0:1:2:3:4:567:89ab"},
		{"5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.ip6.arpa.", ""},   // 31 nibbles
		{"5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.g.ip6.arpa.", ""}, // not hex
		{"50.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.", ""},  // two-digit label
	} {
		got, ok := reverseAddr(tc.name)
		if tc.want == "" {
			if ok {
				t.Errorf("%s: parsed as %v, want no address", tc.name, got)
			}
			continue
		}
		if !ok || got != netip.MustParseAddr(tc.want) {
			t.Errorf("%s: %v, %v; want %s", tc.name, got, ok, tc.want)
		}
	}
}

// Reverse names of instance addresses are answered with the instances'
// names; other reverse names are forwarded.
func TestReverseLookups(t *testing.T) {
	good := startUpstream(t, miekg.RcodeSuccess)
	s, _ := newTestServer(t, Config{Upstreams: []string{good.addr}}, tableSnapshot())
	ptrs := func(m *miekg.Msg) []string {
		var out []string
		for _, rr := range m.Answer {
			if p, ok := rr.(*miekg.PTR); ok {
				out = append(out, p.Hdr.Name+" "+p.Ptr)
			}
		}
		return out
	}

	m := ask(t, s, "10.0.88.10.IN-ADDR.arpa.", miekg.TypePTR)
	want := "10.0.88.10.IN-ADDR.arpa. hello-0.hello.default.svc.gantry.internal."
	if got := ptrs(m); m.Rcode != miekg.RcodeSuccess || !m.Authoritative || len(got) != 1 || got[0] != want {
		t.Errorf("PTR of a ready instance: rcode %s AA %v %v; want %q", miekg.RcodeToString[m.Rcode], m.Authoritative, got, want)
	}
	// Not ready still has its name, as its A record does.
	m = ask(t, s, "20.0.88.10.in-addr.arpa.", miekg.TypePTR)
	if got := ptrs(m); len(got) != 1 || got[0] != "20.0.88.10.in-addr.arpa. empty-0.empty.default.svc.gantry.internal." {
		t.Errorf("PTR of an instance not ready: %v", got)
	}
	m = ask(t, s, "5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.", miekg.TypePTR)
	if got := ptrs(m); len(got) != 1 || got[0][len(got[0])-len("api-1.api.prod.svc.gantry.internal."):] != "api-1.api.prod.svc.gantry.internal." {
		t.Errorf("PTR of an IPv6 instance: %v", got)
	}
	// Another type at the name: NODATA with an SOA.
	m = ask(t, s, "10.0.88.10.in-addr.arpa.", miekg.TypeTXT)
	if m.Rcode != miekg.RcodeSuccess || len(m.Answer) != 0 || len(m.Ns) != 1 || m.Ns[0].Header().Rrtype != miekg.TypeSOA {
		t.Errorf("TXT at an instance's reverse name: rcode %s, %d answers, authority %v", miekg.RcodeToString[m.Rcode], len(m.Answer), m.Ns)
	}
	if n := good.queries.Load(); n != 0 {
		t.Fatalf("the upstream was asked %d times for instance addresses", n)
	}
	// An address Gantry does not know goes upstream.
	m = ask(t, s, "1.2.0.192.in-addr.arpa.", miekg.TypePTR)
	if m.Authoritative || good.queries.Load() != 1 {
		t.Errorf("PTR of an unknown address: AA %v, upstream asked %d times; want it forwarded", m.Authoritative, good.queries.Load())
	}
}

// Whatever parses as a reverse name is the canonical reverse name of the
// address it gives.
func FuzzReverseAddr(f *testing.F) {
	f.Add("5.0.77.10.in-addr.arpa.")
	f.Add("5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.")
	f.Add("05.0.77.10.in-addr.arpa.")
	f.Add("5.0.0.0.d.4.a.0.f.f.f.f.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa.")
	f.Fuzz(func(t *testing.T, name string) {
		a, ok := reverseAddr(name)
		if !ok || a.Is4In6() {
			// A mapped address is looked up as its IPv4 one; miekg
			// spells its reverse name under in-addr.arpa.
			return
		}
		back, err := miekg.ReverseAddr(a.String())
		if err != nil || back != name {
			t.Fatalf("%q parsed as %v, whose reverse name is %q (%v)", name, a, back, err)
		}
	})
}

package dns

import (
	"net"
	"testing"

	miekg "github.com/miekg/dns"
)

// FuzzServeDNS feeds arbitrary packets to the handler the way miekg/dns
// does (whatever parses as a message reaches ServeDNS) and checks that it
// never panics and always writes one well-formed answer that fits the
// transport.
//
//	go test ./internal/dns -run '^$' -fuzz FuzzServeDNS -fuzztime 60s
func FuzzServeDNS(f *testing.F) {
	seed := func(name string, qtype uint16, edns uint16) {
		q := new(miekg.Msg)
		q.SetQuestion(name, qtype)
		if edns > 0 {
			q.SetEdns0(edns, true)
		}
		b, err := q.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, false)
		f.Add(b, true)
	}
	seed("hello.default.svc.gantry.internal.", miekg.TypeA, 0)
	seed("HELLO.default.svc.gantry.internal.", miekg.TypeA, 1232)
	seed("_http._tcp.hello.default.svc.gantry.internal.", miekg.TypeSRV, 512)
	seed("hello-2.hello.default.svc.gantry.internal.", miekg.TypeANY, 0)
	seed("big.default.svc.gantry.internal.", miekg.TypeA, 0)
	seed("nope.default.svc.gantry.internal.", miekg.TypeAAAA, 4096)
	seed("gantry.internal.", miekg.TypeSOA, 0)
	seed("ns.gantry.internal.", miekg.TypeA, 0)
	seed("a.b.localhost.", miekg.TypeAAAA, 0)
	seed("localhost.", miekg.TypeANY, 0)
	seed("x.wild.example.org.", miekg.TypeA, 0)
	seed("10.0.88.10.in-addr.arpa.", miekg.TypePTR, 0)
	seed("5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.", miekg.TypePTR, 1232)
	seed("example.net.", miekg.TypeMX, 0)
	seed("gantry.internal.", miekg.TypeAXFR, 0)
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 1, 0, 1}, false)
	f.Add([]byte("not a dns packet at all"), false)

	snap := tableSnapshot()
	for k, v := range bigSnapshot(120).Services {
		snap.Services[k] = v
	}
	s, _ := newTestServer(f, Config{
		LoadBalancer: func() []net.IP { return []net.IP{net.ParseIP("192.0.2.80"), net.ParseIP("2001:db8::80")} },
	}, snap)

	f.Fuzz(func(t *testing.T, packet []byte, tcp bool) {
		r := new(miekg.Msg)
		if err := r.Unpack(packet); err != nil {
			// miekg/dns answers FORMERR or nothing; our handler never
			// sees it.
			return
		}
		w := newRecorder(tcp)
		s.ServeDNS(w, r)
		if r.Response {
			if len(w.out) != 0 {
				t.Fatalf("answered a response")
			}
			return
		}
		if len(w.out) != 1 {
			t.Fatalf("wrote %d packets, want 1", len(w.out))
		}
		limit := miekg.MaxMsgSize
		if !tcp {
			limit = miekg.MinMsgSize
			var opts []*miekg.OPT
			for _, rr := range r.Extra {
				if o, ok := rr.(*miekg.OPT); ok {
					opts = append(opts, o)
				}
			}
			if len(opts) == 1 {
				limit = min(max(int(opts[0].UDPSize()), miekg.MinMsgSize), DefaultMaxUDPSize)
			}
		}
		if len(w.out[0]) > limit {
			t.Fatalf("answer of %d bytes over the %d byte limit", len(w.out[0]), limit)
		}
		m := new(miekg.Msg)
		if err := m.Unpack(w.out[0]); err != nil {
			t.Fatalf("answer does not parse: %v", err)
		}
		if !m.Response || m.Id != r.Id {
			t.Fatalf("answer id %d response %v for query id %d", m.Id, m.Response, r.Id)
		}
	})
}

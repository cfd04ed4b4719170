package dns

import (
	"testing"

	miekg "github.com/miekg/dns"
)

// TestMetaQueryTypesAreAnsweredHere checks the query types that name no
// data anywhere (RFC 6895 3.1): they are answered at once, for our names
// and others alike, and never cost an upstream a query.
func TestMetaQueryTypesAreAnsweredHere(t *testing.T) {
	up := startUpstream(t, miekg.RcodeSuccess)
	s, _ := newTestServer(t, Config{Upstreams: []string{up.addr}}, tableSnapshot())
	tests := []struct {
		name  string
		qtype uint16
		rcode int
	}{
		{"type 0 is reserved: NOTIMP", 0, miekg.RcodeNotImplemented},
		{"type 65535 is reserved: NOTIMP", 65535, miekg.RcodeNotImplemented},
		{"MAILA is obsolete: NOTIMP", miekg.TypeMAILA, miekg.RcodeNotImplemented},
		{"MAILB is obsolete: NOTIMP", miekg.TypeMAILB, miekg.RcodeNotImplemented},
		{"an unassigned meta type is a format error", 200, miekg.RcodeFormatError},
		{"the first meta type is a format error", 128, miekg.RcodeFormatError},
		{"TSIG as a question is a format error", miekg.TypeTSIG, miekg.RcodeFormatError},
	}
	for _, tt := range tests {
		for _, qname := range []string{"hello.default.svc.gantry.internal.", "example.test."} {
			t.Run(tt.name+" for "+qname, func(t *testing.T) {
				before := up.queries.Load()
				m := ask(t, s, qname, tt.qtype)
				if m.Rcode != tt.rcode {
					t.Fatalf("rcode %s, want %s\n%v", miekg.RcodeToString[m.Rcode], miekg.RcodeToString[tt.rcode], m)
				}
				if len(m.Answer)+len(m.Ns) != 0 || m.Authoritative {
					t.Errorf("want no records and no AA:\n%v", m)
				}
				if n := up.queries.Load() - before; n != 0 {
					t.Errorf("the upstream was asked %d times", n)
				}
			})
		}
	}
	t.Run("ordinary types around them are still answered", func(t *testing.T) {
		for _, qtype := range []uint16{miekg.TypeA, 127, 256, miekg.TypeANY, 65534} {
			if m := ask(t, s, "hello.default.svc.gantry.internal.", qtype); m.Rcode != miekg.RcodeSuccess || !m.Authoritative {
				t.Errorf("type %d: rcode %s AA %v, want NOERROR and AA", qtype, miekg.RcodeToString[m.Rcode], m.Authoritative)
			}
		}
	})
}

package dns

import (
	"sync/atomic"
	"testing"
	"time"

	miekg "github.com/miekg/dns"
)

// With one upstream (the usual resolv.conf), one lost datagram failed the
// query with SERVFAIL after the forward timeout, though most of the budget
// was left: the upstream was not asked again. It is, once; an upstream
// that answers with a failure is not.
func TestForwardAsksAgainAfterALostDatagram(t *testing.T) {
	var seen atomic.Int64
	lossy := scriptedUpstream(t, miekg.HandlerFunc(func(w miekg.ResponseWriter, r *miekg.Msg) {
		if seen.Add(1) == 1 {
			return // the first datagram is lost
		}
		m := new(miekg.Msg)
		m.SetReply(r)
		m.Answer = append(m.Answer, answerA(r.Question[0].Name))
		w.WriteMsg(m)
	}))
	s, _ := newTestServer(t, Config{Upstreams: []string{lossy}, ForwardTimeout: 300 * time.Millisecond}, tableSnapshot())
	addr := serve(t, s)
	q := new(miekg.Msg)
	q.SetQuestion("example.test.", miekg.TypeA)
	m, _ := exchange(t, addr, "udp", q)
	if m.Rcode != miekg.RcodeSuccess || len(m.Answer) != 1 {
		t.Fatalf("after one lost datagram: %s with %d answers; want the upstream's answer", miekg.RcodeToString[m.Rcode], len(m.Answer))
	}
	if n := seen.Load(); n != 2 {
		t.Fatalf("the upstream got %d queries, want 2", n)
	}

	failing := startUpstream(t, miekg.RcodeServerFailure)
	s2, _ := newTestServer(t, Config{Upstreams: []string{failing.addr}, ForwardTimeout: 300 * time.Millisecond}, tableSnapshot())
	addr2 := serve(t, s2)
	m, _ = exchange(t, addr2, "udp", q)
	if m.Rcode != miekg.RcodeServerFailure {
		t.Fatalf("rcode %s, want SERVFAIL", miekg.RcodeToString[m.Rcode])
	}
	if n := failing.queries.Load(); n != 1 {
		t.Fatalf("an upstream answering SERVFAIL was asked %d times, want once", n)
	}
}

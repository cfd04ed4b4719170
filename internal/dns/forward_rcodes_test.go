package dns

import (
	"net"
	"testing"
	"time"

	miekg "github.com/miekg/dns"
)

// An upstream's REFUSED (its own policy, a query without RD) was turned
// into our SERVFAIL, which clients take for a failure and retry. It is
// passed on when no other upstream answers.
func TestForwardPassesAnUpstreamsREFUSEDOn(t *testing.T) {
	refusing := startUpstream(t, miekg.RcodeRefused)
	s, _ := newTestServer(t, Config{Upstreams: []string{refusing.addr}, ForwardTimeout: 300 * time.Millisecond}, snapshot(0))
	if m := ask(t, s, "example.test.", miekg.TypeA); m.Rcode != miekg.RcodeRefused {
		t.Fatalf("rcode %s, want the upstream's REFUSED", miekg.RcodeToString[m.Rcode])
	}
	good := startUpstream(t, miekg.RcodeSuccess)
	s2, _ := newTestServer(t, Config{Upstreams: []string{refusing.addr, good.addr}, ForwardTimeout: 300 * time.Millisecond}, snapshot(0))
	if m := ask(t, s2, "example.test.", miekg.TypeA); m.Rcode != miekg.RcodeSuccess || len(m.Answer) != 1 {
		t.Fatalf("rcode %s; want the next upstream's answer", miekg.RcodeToString[m.Rcode])
	}
}

// An upstream whose answer is truncated and that takes no TCP gave
// SERVFAIL; its truncated answer is passed on with TC, as CoreDNS does.
func TestForwardPassesATruncatedAnswerOnWhenTCPFails(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &miekg.Server{PacketConn: pc, Handler: miekg.HandlerFunc(func(w miekg.ResponseWriter, r *miekg.Msg) {
		m := new(miekg.Msg)
		m.SetReply(r)
		m.Truncated = true
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	// Nothing listens on TCP at that port.
	s, _ := newTestServer(t, Config{Upstreams: []string{pc.LocalAddr().String()}, ForwardTimeout: 300 * time.Millisecond}, snapshot(0))
	m := ask(t, s, "example.test.", miekg.TypeA)
	if m.Rcode != miekg.RcodeSuccess || !m.Truncated {
		t.Fatalf("rcode %s TC %v; want the truncated answer with TC", miekg.RcodeToString[m.Rcode], m.Truncated)
	}
	// A client that asked over TCP has nowhere else to go: SERVFAIL.
	q := new(miekg.Msg)
	q.SetQuestion("example.test.", miekg.TypeA)
	if m := exchangeHandler(t, s, q, true); m.Rcode != miekg.RcodeServerFailure || m.Truncated {
		t.Fatalf("over TCP: rcode %s TC %v; want SERVFAIL", miekg.RcodeToString[m.Rcode], m.Truncated)
	}
}

// A query of class ANY is answered for IN only, so not authoritatively
// (RFC 1035 6.2).
func TestClassANYAnswersAreNotAuthoritative(t *testing.T) {
	s, _ := newTestServer(t, Config{}, snapshot(1, svc("default", "hello", 1, "10.88.0.10")))
	for _, name := range []string{"hello.default.svc.gantry.internal.", "nope.default.svc.gantry.internal."} {
		q := new(miekg.Msg)
		q.SetQuestion(name, miekg.TypeA)
		q.Question[0].Qclass = miekg.ClassANY
		m := exchangeHandler(t, s, q, false)
		if m.Authoritative {
			t.Errorf("%s class ANY: aa set", name)
		}
	}
	if m := ask(t, s, "hello.default.svc.gantry.internal.", miekg.TypeA); !m.Authoritative || len(m.Answer) != 1 {
		t.Errorf("class IN: %v; want an authoritative answer", m)
	}
}

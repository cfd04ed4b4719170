package dns

import (
	"fmt"
	"strings"
	"testing"
	"time"

	miekg "github.com/miekg/dns"
)

// An upstream that answers FORMERR (or NOTIMP) whether or not the query
// carries EDNS0 cannot answer us at all: like one that answers SERVFAIL,
// it must make way for the next upstream rather than fail every lookup.
func TestForwardFormerrUpstreamMakesWayForTheNext(t *testing.T) {
	for _, rcode := range []int{miekg.RcodeFormatError, miekg.RcodeNotImplemented} {
		t.Run(miekg.RcodeToString[rcode], func(t *testing.T) {
			broken := scriptedUpstream(t, func(w miekg.ResponseWriter, r *miekg.Msg) {
				m := new(miekg.Msg)
				m.SetRcode(r, rcode)
				w.WriteMsg(m)
			})
			good := startUpstream(t, miekg.RcodeSuccess)
			s, _ := newTestServer(t, Config{Upstreams: []string{broken, good.addr}, ForwardTimeout: 500 * time.Millisecond}, snapshot(0))
			m := ask(t, s, "example.test.", miekg.TypeA)
			if m.Rcode != miekg.RcodeSuccess || len(m.Answer) != 1 {
				t.Fatalf("rcode %s with %d answers; want the second upstream's answer (asked: %d)",
					miekg.RcodeToString[m.Rcode], len(m.Answer), good.queries.Load())
			}
		})
	}
}

// rawUDPUpstream answers UDP queries with whatever reply(r) returns as
// bytes, and TCP queries through the miekg handler h.
func rawUDPUpstream(t *testing.T, reply func(r *miekg.Msg) []byte, h miekg.HandlerFunc) string {
	t.Helper()
	pc, ln, err := listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			r := new(miekg.Msg)
			if r.Unpack(buf[:n]) != nil {
				continue
			}
			if b := reply(r); b != nil {
				pc.WriteTo(b, from)
			}
		}
	}()
	started := make(chan struct{})
	srv := &miekg.Server{Listener: ln, Handler: h, NotifyStartedFunc: func() { close(started) }}
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown(); pc.Close() })
	return pc.LocalAddr().String()
}

func bigTXT(r *miekg.Msg) *miekg.Msg {
	m := new(miekg.Msg)
	m.SetReply(r)
	for i := range 30 {
		m.Answer = append(m.Answer, &miekg.TXT{
			Hdr: miekg.RR_Header{Name: r.Question[0].Name, Rrtype: miekg.TypeTXT, Class: miekg.ClassINET, Ttl: 60},
			Txt: []string{fmt.Sprintf("%02d-%s", i, strings.Repeat("z", 40))},
		})
	}
	return m
}

// A UDP answer with TC set is only a pointer to TCP (RFC 1035 4.2.1, RFC
// 7766): servers that cut the datagram at 512 bytes mid-record, as some
// do, must still lead to the TCP retry, not to SERVFAIL.
func TestForwardTruncatedDatagramCutMidRecordFallsBackToTCP(t *testing.T) {
	up := rawUDPUpstream(t, func(r *miekg.Msg) []byte {
		m := bigTXT(r)
		m.Truncated = true
		b, err := m.Pack()
		if err != nil {
			t.Error(err)
			return nil
		}
		return b[:miekg.MinMsgSize]
	}, func(w miekg.ResponseWriter, r *miekg.Msg) { w.WriteMsg(bigTXT(r)) })
	s, _ := newTestServer(t, Config{Upstreams: []string{up}, ForwardTimeout: time.Second}, snapshot(0))
	q := new(miekg.Msg)
	q.SetQuestion("big.example.test.", miekg.TypeTXT)
	m := exchangeHandler(t, s, q, true)
	if m.Rcode != miekg.RcodeSuccess || len(m.Answer) != 30 {
		t.Fatalf("rcode %s with %d answers; want the 30 of the TCP answer", miekg.RcodeToString[m.Rcode], len(m.Answer))
	}
}

// A host with three resolvers, the first two of them down: the budget
// runs out on the dead ones, but the next queries must reach the live
// one rather than fail forever on the same dead pair.
func TestForwardDeadUpstreamsDoNotHideALiveOneForever(t *testing.T) {
	good := startUpstream(t, miekg.RcodeSuccess)
	dead1, dead2 := deadAddr(t), deadAddr(t)
	s, _ := newTestServer(t, Config{
		Upstreams:      []string{dead1, dead2, good.addr},
		ForwardTimeout: 100 * time.Millisecond,
		ForwardBudget:  150 * time.Millisecond,
	}, snapshot(0))
	var rcodes []string
	for range 4 {
		m := ask(t, s, "example.test.", miekg.TypeA)
		rcodes = append(rcodes, miekg.RcodeToString[m.Rcode])
	}
	if rcodes[len(rcodes)-1] != "NOERROR" {
		t.Fatalf("rcodes of four queries in a row: %v; the live third upstream was never asked (%d queries)", rcodes, good.queries.Load())
	}
}

// An upstream that ignores our EDNS0 size sends a datagram larger than
// the read buffer, without TC; the kernel cuts it and it does not parse.
// The answer is fetched again over TCP rather than the upstream failing.
func TestForwardOversizeDatagramFallsBackToTCP(t *testing.T) {
	big := func(r *miekg.Msg) *miekg.Msg {
		m := bigTXT(r)
		m.Answer = append(m.Answer, bigTXT(r).Answer...) // 60 records, ~3.5 kB
		return m
	}
	up := rawUDPUpstream(t, func(r *miekg.Msg) []byte {
		b, err := big(r).Pack()
		if err != nil {
			t.Error(err)
			return nil
		}
		return b
	}, func(w miekg.ResponseWriter, r *miekg.Msg) { w.WriteMsg(big(r)) })
	s, _ := newTestServer(t, Config{Upstreams: []string{up}, ForwardTimeout: time.Second}, snapshot(0))
	q := new(miekg.Msg)
	q.SetQuestion("big.example.test.", miekg.TypeTXT)
	m := exchangeHandler(t, s, q, true)
	if m.Rcode != miekg.RcodeSuccess || len(m.Answer) != 60 {
		t.Fatalf("rcode %s with %d answers; want the 60 of the TCP answer", miekg.RcodeToString[m.Rcode], len(m.Answer))
	}
}

// When one attempt may take the whole budget (a timeout no shorter than
// the budget), a dead first upstream fails on its own, not by the
// budget: the next query must start at the live one.
func TestForwardTimeoutAsLongAsTheBudgetStillMovesOn(t *testing.T) {
	good := startUpstream(t, miekg.RcodeSuccess)
	s, _ := newTestServer(t, Config{
		Upstreams:      []string{deadAddr(t), good.addr},
		ForwardTimeout: 150 * time.Millisecond,
		ForwardBudget:  100 * time.Millisecond,
	}, snapshot(0))
	var rcodes []string
	for range 3 {
		m := ask(t, s, "example.test.", miekg.TypeA)
		rcodes = append(rcodes, miekg.RcodeToString[m.Rcode])
	}
	if rcodes[len(rcodes)-1] != "NOERROR" {
		t.Fatalf("rcodes of three queries in a row: %v; the live second upstream was asked %d times", rcodes, good.queries.Load())
	}
}

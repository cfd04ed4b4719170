package dns

import (
	"sync"
	"testing"
	"time"

	miekg "github.com/miekg/dns"

	"github.com/gantry-dev/gantry/internal/discovery"
)

// A host whose resolv.conf lists a link-local IPv6 resolver with its zone
// (NetworkManager writes "nameserver fe80::1%wlan0") must still get a DNS
// server: forwarding is optional, service discovery is not.
func TestResolvConfWithAZonedIPv6Nameserver(t *testing.T) {
	path := t.TempDir() + "/resolv.conf"
	writeFile(t, path, "nameserver 192.0.2.53\nnameserver fe80::1%eth0\n")
	s, err := New(Config{ResolvConf: path}, discovery.NewBroadcaster(), nil)
	if err != nil {
		t.Fatalf("New with a zoned IPv6 nameserver in resolv.conf: %v", err)
	}
	defer s.Close()
	if got := *s.fwd.usable.Load(); len(got) != 2 || got[1] != "[fe80::1%eth0]:53" {
		t.Fatalf("upstreams %q, want both, the zone kept", got)
	}
}

// The forwarder says it advertises 1232 bytes to upstreams so that their
// answers do not fragment; a client's bigger EDNS0 size must not be passed
// on as it is.
func TestForwardAdvertisesItsOwnUDPSize(t *testing.T) {
	var mu sync.Mutex
	var seen []uint16
	var do []bool
	up := scriptedUpstream(t, func(w miekg.ResponseWriter, r *miekg.Msg) {
		if opt := r.IsEdns0(); opt != nil {
			mu.Lock()
			seen = append(seen, opt.UDPSize())
			do = append(do, opt.Do())
			mu.Unlock()
		}
		m := new(miekg.Msg)
		m.SetReply(r)
		m.Answer = []miekg.RR{answerA(r.Question[0].Name)}
		w.WriteMsg(m)
	})
	s, _ := newTestServer(t, Config{Upstreams: []string{up}, ForwardTimeout: 500 * time.Millisecond}, snapshot(0))
	q := new(miekg.Msg)
	q.SetQuestion("example.test.", miekg.TypeA)
	q.SetEdns0(65000, true)
	m := exchangeHandler(t, s, q, false)
	if m.Rcode != miekg.RcodeSuccess {
		t.Fatalf("rcode %s", miekg.RcodeToString[m.Rcode])
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 1 || seen[0] > forwardUDPSize || !do[0] {
		t.Fatalf("upstream saw EDNS0 sizes %v (DO %v); want at most %d, the client's DO bit kept", seen, do, forwardUDPSize)
	}
}

// An upstream answer must match the question in class too.
func TestForwardChecksTheClass(t *testing.T) {
	up := scriptedUpstream(t, func(w miekg.ResponseWriter, r *miekg.Msg) {
		m := new(miekg.Msg)
		m.SetReply(r)
		m.Question[0].Qclass = miekg.ClassCHAOS
		w.WriteMsg(m)
	})
	s, _ := newTestServer(t, Config{Upstreams: []string{up}, ForwardTimeout: 500 * time.Millisecond}, snapshot(0))
	m := ask(t, s, "example.test.", miekg.TypeA)
	if m.Rcode != miekg.RcodeServerFailure {
		t.Fatalf("an answer for class CH was accepted for an IN question: rcode %s", miekg.RcodeToString[m.Rcode])
	}
}

// A "response" without QR (an upstream that reflects queries, e.g. a loop
// through a NAT back to some DNS forwarder) is not an answer: the
// client must get SERVFAIL, not a copy of its own query that it drops.
func TestForwardRejectsAQueryAsAnswer(t *testing.T) {
	up := scriptedUpstream(t, func(w miekg.ResponseWriter, r *miekg.Msg) {
		echo := r.Copy()
		echo.Response = false
		w.WriteMsg(echo)
	})
	s, _ := newTestServer(t, Config{Upstreams: []string{up}, ForwardTimeout: 500 * time.Millisecond}, snapshot(0))
	q := new(miekg.Msg)
	q.SetQuestion("example.test.", miekg.TypeA)
	w := newRecorder(false)
	s.ServeDNS(w, q)
	if len(w.out) != 1 {
		t.Fatalf("%d answers", len(w.out))
	}
	m := new(miekg.Msg)
	if err := m.Unpack(w.out[0]); err != nil {
		t.Fatal(err)
	}
	if !m.Response || m.Rcode != miekg.RcodeServerFailure {
		t.Fatalf("client got QR=%v rcode %s; want a SERVFAIL response", m.Response, miekg.RcodeToString[m.Rcode])
	}
}

func TestNormalizeUpstream(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":          "192.0.2.1:53",
		"192.0.2.1:5353":     "192.0.2.1:5353",
		"::1":                "[::1]:53",
		"[::1]":              "[::1]:53",
		"[::1]:54":           "[::1]:54",
		"fe80::1%eth0":       "[fe80::1%eth0]:53",
		"[fe80::1%eth0]:53":  "[fe80::1%eth0]:53",
		"::ffff:192.0.2.1":   "192.0.2.1:53",
		"example.com":        "",
		"example.com:53":     "",
		"192.0.2.1:":         "",
		"192.0.2.1:0":        "",
		"[::1":               "",
		"fe80::1%eth0]:53":   "",
		"":                   "",
		"192.0.2.1:53:53":    "",
		"[fe80::1%eth0]:abc": "",
	} {
		got, err := normalizeUpstream(in)
		if want == "" {
			if err == nil {
				t.Errorf("normalizeUpstream(%q) = %q, want an error", in, got)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("normalizeUpstream(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// One forwarded query has one budget over all the upstreams it tries, so
// that a client whose upstreams are dead gets SERVFAIL before its stub
// resolver gives up on us, not after a timeout per upstream.
func TestForwardBudgetIsSharedByEveryUpstream(t *testing.T) {
	good := startUpstream(t, miekg.RcodeSuccess)
	dead := deadAddr(t)
	const budget = 100 * time.Millisecond
	for _, tt := range []struct {
		name      string
		upstreams []string
		timeout   time.Duration
		rcode     int
	}{
		{"dead upstreams share the budget and the one after them is not asked",
			[]string{dead, dead, dead, dead, good.addr}, 40 * time.Millisecond, miekg.RcodeServerFailure},
		{"an upstream waits no longer than what is left of the budget",
			[]string{dead}, time.Second, miekg.RcodeServerFailure},
		{"an upstream reached within the budget answers",
			[]string{dead, good.addr}, 40 * time.Millisecond, miekg.RcodeSuccess},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newTestServer(t, Config{Upstreams: tt.upstreams, ForwardTimeout: tt.timeout, ForwardBudget: budget}, snapshot(0))
			before := good.queries.Load()
			start := time.Now()
			m := ask(t, s, "example.test.", miekg.TypeA)
			took := time.Since(start)
			if m.Rcode != tt.rcode {
				t.Fatalf("rcode %s after %v, want %s", miekg.RcodeToString[m.Rcode], took, miekg.RcodeToString[tt.rcode])
			}
			if asked := good.queries.Load() > before; asked != (tt.rcode == miekg.RcodeSuccess) {
				t.Errorf("the good upstream asked: %v", asked)
			}
			if took > 3*budget {
				t.Errorf("took %v with a budget of %v", took, budget)
			}
		})
	}
}

// Old resolvers and middleboxes answer FORMERR or NOTIMP to a query that
// carries an OPT record. Such an upstream is asked once more without it,
// and the client gets EDNS0 in its answer only if it asked for it.
func TestForwardRetriesWithoutEDNSOnFormerr(t *testing.T) {
	for _, tt := range []struct {
		name string
		// ednsRcode is the upstream's answer to a query with an OPT
		// record, plainRcode to one without; bare leaves the question
		// out of the first, as some old servers do.
		ednsRcode, plainRcode int
		bare                  bool
		clientEDNS, clientDO  bool
		rcode                 int
	}{
		{"FORMERR is retried without EDNS0 for a client without EDNS0",
			miekg.RcodeFormatError, miekg.RcodeSuccess, false, false, false, miekg.RcodeSuccess},
		{"FORMERR without the question is retried for a client with EDNS0 and DO",
			miekg.RcodeFormatError, miekg.RcodeSuccess, true, true, true, miekg.RcodeSuccess},
		{"NOTIMP is retried without EDNS0",
			miekg.RcodeNotImplemented, miekg.RcodeSuccess, false, true, false, miekg.RcodeSuccess},
		{"an upstream that answers FORMERR either way is asked twice, no more",
			miekg.RcodeFormatError, miekg.RcodeFormatError, false, false, false, miekg.RcodeFormatError},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			var withOPT []bool
			up := scriptedUpstream(t, func(w miekg.ResponseWriter, r *miekg.Msg) {
				edns := r.IsEdns0() != nil
				mu.Lock()
				withOPT = append(withOPT, edns)
				mu.Unlock()
				m := new(miekg.Msg)
				m.SetReply(r)
				switch {
				case edns:
					m.Rcode = tt.ednsRcode
					if tt.bare {
						m.Question = nil
					}
				case tt.plainRcode != miekg.RcodeSuccess:
					m.Rcode = tt.plainRcode
				default:
					m.Answer = []miekg.RR{answerA(r.Question[0].Name)}
				}
				w.WriteMsg(m)
			})
			s, _ := newTestServer(t, Config{Upstreams: []string{up}, ForwardTimeout: 500 * time.Millisecond}, snapshot(0))
			q := new(miekg.Msg)
			q.SetQuestion("example.test.", miekg.TypeA)
			if tt.clientEDNS {
				q.SetEdns0(1232, tt.clientDO)
			}
			m := exchangeHandler(t, s, q, false)
			if m.Rcode != tt.rcode {
				t.Fatalf("rcode %s, want %s\n%v", miekg.RcodeToString[m.Rcode], miekg.RcodeToString[tt.rcode], m)
			}
			if tt.rcode == miekg.RcodeSuccess && len(m.Answer) != 1 {
				t.Errorf("%d answers, want the upstream's 1", len(m.Answer))
			}
			mu.Lock()
			defer mu.Unlock()
			if len(withOPT) != 2 || !withOPT[0] || withOPT[1] {
				t.Errorf("upstream queries with OPT: %v, want [true false]", withOPT)
			}
			// Our OPT to the client says what we take from it, whatever
			// the upstream spoke; DO is copied from the query (RFC 3225).
			opt := m.IsEdns0()
			if (opt != nil) != tt.clientEDNS {
				t.Fatalf("OPT in the answer: %v, want %v", opt != nil, tt.clientEDNS)
			}
			if opt != nil && opt.Do() != tt.clientDO {
				t.Errorf("DO %v in the answer, want the client's %v", opt.Do(), tt.clientDO)
			}
		})
	}
}

// TestForwardSendsOnlyTheQuestion checks what reaches the upstream of a
// query whose other sections hold records: only the question and our
// OPT. A TSIG we hold no key for cannot be signed again, and records in
// the answer or authority section of a query are not ours to pass on.
func TestForwardSendsOnlyTheQuestion(t *testing.T) {
	got := make(chan *miekg.Msg, 4)
	up := scriptedUpstream(t, func(w miekg.ResponseWriter, r *miekg.Msg) {
		got <- r
		m := new(miekg.Msg)
		m.SetReply(r)
		m.Answer = []miekg.RR{answerA(r.Question[0].Name)}
		w.WriteMsg(m)
	})
	s, _ := newTestServer(t, Config{Upstreams: []string{up}, ForwardTimeout: 500 * time.Millisecond}, snapshot(0))
	tsig := func(q *miekg.Msg) {
		q.Extra = append(q.Extra, &miekg.TSIG{
			Hdr:        miekg.RR_Header{Name: "key.", Rrtype: miekg.TypeTSIG, Class: miekg.ClassANY},
			Algorithm:  miekg.HmacSHA256,
			TimeSigned: uint64(time.Now().Unix()),
			Fudge:      300,
			MAC:        "00112233445566778899aabbccddeeff",
			OrigId:     q.Id,
		})
	}
	tests := []struct {
		name string
		add  func(q *miekg.Msg)
	}{
		{"a TSIG without EDNS", tsig},
		{"a TSIG after an OPT", func(q *miekg.Msg) { q.SetEdns0(1232, true); tsig(q) }},
		{"records in the answer and authority sections", func(q *miekg.Msg) {
			q.Answer = []miekg.RR{answerA("stray.example.")}
			q.Ns = []miekg.RR{answerA("stray.example.")}
		}},
	}
	for _, tt := range tests {
		t.Run("the upstream gets only the question of a query with "+tt.name, func(t *testing.T) {
			q := new(miekg.Msg)
			q.SetQuestion("example.test.", miekg.TypeA)
			q.CheckingDisabled = true
			tt.add(q)
			m := exchangeHandler(t, s, q, false)
			if m.Rcode != miekg.RcodeSuccess || len(m.Answer) != 1 {
				t.Fatalf("want the upstream's answer:\n%v", m)
			}
			var r *miekg.Msg
			select {
			case r = <-got:
			default:
				t.Fatal("the upstream was not asked")
			}
			if len(r.Answer) != 0 || len(r.Ns) != 0 || len(r.Extra) != 1 || r.IsEdns0() == nil {
				t.Fatalf("the upstream got more than the question and an OPT:\n%v", r)
			}
			if !r.RecursionDesired || !r.CheckingDisabled || r.Question[0] != q.Question[0] {
				t.Errorf("the upstream got flags rd %v cd %v and question %v, want the client's", r.RecursionDesired, r.CheckingDisabled, r.Question)
			}
		})
	}
}

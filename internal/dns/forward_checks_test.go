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
	s, _ := newTestServer(t, Config{Upstreams: []string{up}, ForwardTimeout: 500 * time.Millisecond}, nil)
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
	s, _ := newTestServer(t, Config{Upstreams: []string{up}, ForwardTimeout: 500 * time.Millisecond}, nil)
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
	s, _ := newTestServer(t, Config{Upstreams: []string{up}, ForwardTimeout: 500 * time.Millisecond}, nil)
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

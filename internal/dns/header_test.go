package dns

import (
	"net"
	"testing"
	"time"

	miekg "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// udpAsk sends q to addr in one datagram and returns the answer, or nil
// if none came within wait.
func udpAsk(t *testing.T, addr string, q *miekg.Msg, wait time.Duration) *miekg.Msg {
	t.Helper()
	b, err := q.Pack()
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, miekg.MaxMsgSize)
	n, err := c.Read(buf)
	if err != nil {
		return nil
	}
	m := new(miekg.Msg)
	if err := m.Unpack(buf[:n]); err != nil {
		t.Fatalf("answer does not parse: %v", err)
	}
	return m
}

// TestOddHeadersOverTheNetwork sends queries that miekg/dns would answer
// by itself if we let it, and checks the answer a client gets.
func TestOddHeadersOverTheNetwork(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	s, _ := newTestServer(t, Config{Registerer: reg}, tableSnapshot())
	addr := serve(t, s)
	query := func(edns bool) *miekg.Msg {
		q := new(miekg.Msg)
		q.SetQuestion("hello.default.svc.gantry.internal.", miekg.TypeA)
		if edns {
			q.SetEdns0(1232, false)
		}
		return q
	}
	tests := []headerCase{
		{"an UPDATE with EDNS gets NOTIMP with an OPT", func() *miekg.Msg {
			q := query(true)
			q.Opcode = miekg.OpcodeUpdate
			q.RecursionDesired = false
			return q
		}, miekg.RcodeNotImplemented, true},
		{"a STATUS query gets NOTIMP, not the query's TC bit", func() *miekg.Msg {
			q := query(false)
			q.Opcode = miekg.OpcodeStatus
			q.Truncated = true
			return q
		}, miekg.RcodeNotImplemented, false},
		{"a query with no question and a cookie gets FORMERR with an OPT", func() *miekg.Msg {
			q := query(true)
			q.Question = nil
			q.IsEdns0().Option = append(q.IsEdns0().Option, &miekg.EDNS0_COOKIE{Code: miekg.EDNS0COOKIE, Cookie: "0102030405060708"})
			return q
		}, miekg.RcodeFormatError, true},
		{"two questions get FORMERR, not the query's RA bit", func() *miekg.Msg {
			q := query(false)
			q.Question = append(q.Question, q.Question[0])
			q.RecursionAvailable = true
			return q
		}, miekg.RcodeFormatError, false},
		{"EDNS version 1 in a NOTIFY gets BADVERS", func() *miekg.Msg {
			q := query(true)
			q.Opcode = miekg.OpcodeNotify
			q.IsEdns0().SetVersion(1)
			return q
		}, miekg.RcodeBadVers, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := tt.make()
			m := udpAsk(t, addr, q, 2*time.Second)
			if m == nil {
				t.Fatal("no answer")
			}
			if m.Id != q.Id || !m.Response || m.Rcode != tt.rcode {
				t.Fatalf("id %d response %v rcode %s, want id %d, a response, %s\n%v", m.Id, m.Response,
					miekg.RcodeToString[m.Rcode], q.Id, miekg.RcodeToString[tt.rcode], m)
			}
			if m.Opcode != q.Opcode {
				t.Errorf("opcode %d, want the query's %d", m.Opcode, q.Opcode)
			}
			if m.Truncated || m.RecursionAvailable || m.AuthenticatedData || m.Authoritative {
				t.Errorf("flags tc %v ra %v ad %v aa %v, want none\n%v", m.Truncated, m.RecursionAvailable,
					m.AuthenticatedData, m.Authoritative, m)
			}
			if got := m.IsEdns0() != nil; got != tt.wantOPT {
				t.Errorf("OPT in answer %v, want %v\n%v", got, tt.wantOPT, m)
			}
		})
	}

	t.Run("a response sent to us is dropped and counted", func(t *testing.T) {
		q := query(false)
		q.Response = true
		if m := udpAsk(t, addr, q, 300*time.Millisecond); m != nil {
			t.Fatalf("answered a response:\n%v", m)
		}
		if n := counterValue(t, reg, "gantry_dns_dropped_total", map[string]string{"reason": "response"}); n != 1 {
			t.Errorf("responses dropped counted %v, want 1", n)
		}
	})
}

// headerCase is a query with an odd header or question and the answer's
// rcode.
type headerCase struct {
	name  string
	make  func() *miekg.Msg
	rcode int
	// wantOPT says the answer must carry an OPT record.
	wantOPT bool
}

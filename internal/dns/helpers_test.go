package dns

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	miekg "github.com/miekg/dns"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/discovery"
)

// testLogger logs to the test output when -v is set.
func testLogger(t testing.TB) *slog.Logger {
	t.Helper()
	if !testing.Verbose() {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// svc builds a service whose first `ready` of the given IPs are ready.
func svc(ns, name string, ready int, ips ...string) *discovery.Service {
	s := &discovery.Service{
		Namespace: ns,
		Name:      name,
		Ports: []v1.Port{
			{Name: "http", Port: 8080, Protocol: v1.ProtocolHTTP},
			{Name: "dns", Port: 53, Protocol: v1.ProtocolUDP},
		},
	}
	for i, ip := range ips {
		ep := discovery.Endpoint{Instance: fmt.Sprintf("%s-%d", name, i), IP: ip, Node: "n1"}
		s.All = append(s.All, ep)
		if i < ready {
			s.Ready = append(s.Ready, ep)
		}
	}
	return s
}

// snapshot makes a snapshot of the given services at revision rev.
func snapshot(rev int64, services ...*discovery.Service) *discovery.Snapshot {
	snap := &discovery.Snapshot{Revision: rev, Time: time.Now(), Services: map[string]*discovery.Service{}}
	for _, s := range services {
		snap.Services[s.Key()] = s
	}
	return snap
}

// newTestServer starts a Server over a broadcaster holding snap. Unless
// cfg says otherwise, forwarding is off.
func newTestServer(t testing.TB, cfg Config, snap *discovery.Snapshot) (*Server, *discovery.Broadcaster) {
	t.Helper()
	b := discovery.NewBroadcaster()
	if snap != nil {
		b.Publish(snap)
	}
	if cfg.Upstreams == nil {
		cfg.Upstreams = []string{}
	}
	s, err := New(cfg, b, testLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, b
}

// serve runs s on fresh UDP and TCP sockets of 127.0.0.1 and returns the
// address.
func serve(t testing.TB, s *Server) string {
	t.Helper()
	return serveOn(t, s, "127.0.0.1:0")
}

// serveOn runs s on fresh UDP and TCP sockets of addr (port 0 picks one)
// until the test ends and returns the address bound.
func serveOn(t testing.TB, s *Server, addr string) string {
	t.Helper()
	pc, ln, err := listen(addr)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, pc, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	bound := pc.LocalAddr().String()
	waitServing(t, bound)
	return bound
}

// waitServing waits until addr answers over UDP and TCP.
func waitServing(t testing.TB, addr string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for _, network := range []string{"udp", "tcp"} {
		c := &miekg.Client{Net: network, Timeout: 200 * time.Millisecond}
		m := new(miekg.Msg)
		m.SetQuestion("gantry.internal.", miekg.TypeSOA)
		for {
			if _, _, err := c.Exchange(m, addr); err == nil {
				break
			} else if time.Now().After(deadline) {
				t.Fatalf("%s %s not answering: %v", network, addr, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// recorder is a ResponseWriter that keeps what is written.
type recorder struct {
	local, remote net.Addr
	out           [][]byte
}

func newRecorder(tcp bool) *recorder {
	if tcp {
		return &recorder{
			local:  &net.TCPAddr{IP: net.IPv4(10, 88, 0, 1), Port: 53},
			remote: &net.TCPAddr{IP: net.IPv4(10, 88, 0, 7), Port: 40000},
		}
	}
	return &recorder{
		local:  &net.UDPAddr{IP: net.IPv4(10, 88, 0, 1), Port: 53},
		remote: &net.UDPAddr{IP: net.IPv4(10, 88, 0, 7), Port: 40000},
	}
}

func (r *recorder) LocalAddr() net.Addr  { return r.local }
func (r *recorder) RemoteAddr() net.Addr { return r.remote }
func (r *recorder) WriteMsg(m *miekg.Msg) error {
	b, err := m.Pack()
	if err != nil {
		return err
	}
	_, err = r.Write(b)
	return err
}
func (r *recorder) Write(b []byte) (int, error) {
	r.out = append(r.out, append([]byte(nil), b...))
	return len(b), nil
}
func (r *recorder) Close() error        { return nil }
func (r *recorder) TsigStatus() error   { return nil }
func (r *recorder) TsigTimersOnly(bool) {}
func (r *recorder) Hijack()             {}

// ask sends one query through ServeDNS as if over UDP and returns the
// single answer.
func ask(t testing.TB, s *Server, name string, qtype uint16) *miekg.Msg {
	t.Helper()
	q := new(miekg.Msg)
	q.SetQuestion(name, qtype)
	return exchangeHandler(t, s, q, false)
}

func exchangeHandler(t testing.TB, s *Server, q *miekg.Msg, tcp bool) *miekg.Msg {
	t.Helper()
	w := newRecorder(tcp)
	s.ServeDNS(w, q)
	if len(w.out) != 1 {
		t.Fatalf("%v: got %d answers, want 1", q.Question, len(w.out))
	}
	m := new(miekg.Msg)
	if err := m.Unpack(w.out[0]); err != nil {
		t.Fatalf("%v: unpack answer: %v", q.Question, err)
	}
	if m.Id != q.Id || !m.Response {
		t.Fatalf("%v: answer id %d response %v, want id %d and a response", q.Question, m.Id, m.Response, q.Id)
	}
	return m
}

// rdata renders a section as sorted "TYPE data" strings, which compare
// well in tables.
func rdata(rrs []miekg.RR) []string {
	var out []string
	for _, rr := range rrs {
		if rr.Header().Rrtype == miekg.TypeOPT {
			continue
		}
		f := strings.Fields(rr.String())
		// name ttl class type data...
		out = append(out, strings.Join(append([]string{f[3]}, f[4:]...), " "))
	}
	sort.Strings(out)
	return out
}

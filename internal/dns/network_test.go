package dns

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	miekg "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gantry-dev/gantry/internal/discovery"
)

// dig runs Debian's dig against addr and returns its output.
func dig(t *testing.T, addr string, args ...string) string {
	t.Helper()
	path, err := exec.LookPath("dig")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("dig is missing (Debian package dnsutils, installed by scripts/setup.sh); CI=true forbids skipping")
		}
		t.Skip("dig not installed (Debian package dnsutils)")
	}
	host, port, _ := net.SplitHostPort(addr)
	args = append([]string{"@" + host, "-p", port, "+time=2", "+tries=1"}, args...)
	out, err := exec.Command(path, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("dig %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func sortedLines(s string) []string {
	lines := strings.Fields(strings.TrimSpace(s))
	sort.Strings(lines)
	return lines
}

func TestDigOverUDPAndTCP(t *testing.T) {
	s, _ := newTestServer(t, Config{}, tableSnapshot())
	addr := serve(t, s)

	t.Run("dig over UDP gets exactly the ready IPs", func(t *testing.T) {
		got := sortedLines(dig(t, addr, "+short", "+notcp", "hello.default.svc.gantry.internal", "A"))
		if want := []string{"10.88.0.10", "10.88.0.11"}; !slices.Equal(got, want) {
			t.Fatalf("got %q, want %q", got, want)
		}
	})
	t.Run("dig over TCP gets the SRV records", func(t *testing.T) {
		out := dig(t, addr, "+short", "+tcp", "_http._tcp.hello.default.svc.gantry.internal", "SRV")
		got := strings.Split(strings.TrimSpace(out), "\n")
		sort.Strings(got)
		want := []string{
			"0 50 8080 hello-0.hello.default.svc.gantry.internal.",
			"0 50 8080 hello-1.hello.default.svc.gantry.internal.",
		}
		if !slices.Equal(got, want) {
			t.Fatalf("got %q, want %q", got, want)
		}
	})
	t.Run("dig sees NXDOMAIN for an unknown app", func(t *testing.T) {
		out := dig(t, addr, "nope.default.svc.gantry.internal", "A")
		if !strings.Contains(out, "status: NXDOMAIN") || !strings.Contains(out, "flags: qr aa") {
			t.Fatalf("want an authoritative NXDOMAIN:\n%s", out)
		}
	})
	t.Run("dig sees NODATA with the SOA for AAAA of a service", func(t *testing.T) {
		out := dig(t, addr, "hello.default.svc.gantry.internal", "AAAA")
		if !strings.Contains(out, "status: NOERROR") || !strings.Contains(out, "ANSWER: 0") ||
			!strings.Contains(out, "AUTHORITY: 1") || !strings.Contains(out, "SOA") {
			t.Fatalf("want NOERROR with no answer and an SOA in authority:\n%s", out)
		}
	})
	t.Run("dig resolves an apps domain name to where the query arrived", func(t *testing.T) {
		got := sortedLines(dig(t, addr, "+short", "hello.default.localhost", "A"))
		if want := []string{"127.0.0.1"}; !slices.Equal(got, want) {
			t.Fatalf("got %q, want %q", got, want)
		}
	})
}

// bigSnapshot has one app with n ready instances.
func bigSnapshot(n int) *discovery.Snapshot {
	ips := make([]string, n)
	for i := range ips {
		ips[i] = fmt.Sprintf("10.88.%d.%d", i/250, i%250+1)
	}
	return snapshot(1, svc("default", "big", n, ips...))
}

func exchange(t *testing.T, addr, network string, q *miekg.Msg) (*miekg.Msg, int) {
	t.Helper()
	c := &miekg.Client{Net: network, Timeout: 2 * time.Second, UDPSize: miekg.MaxMsgSize}
	conn, err := c.Dial(addr)
	if err != nil {
		t.Fatalf("dial %s %s: %v", network, addr, err)
	}
	defer conn.Close()
	// Read the raw bytes to check the size on the wire.
	conn.UDPSize = miekg.MaxMsgSize
	if err := conn.WriteMsg(q); err != nil {
		t.Fatalf("write: %v", err)
	}
	raw, err := conn.ReadMsgHeader(nil)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	m := new(miekg.Msg)
	if err := m.Unpack(raw); err != nil {
		t.Fatalf("unpack: %v", err)
	}
	return m, len(raw)
}

func TestTruncationAndTCPFallback(t *testing.T) {
	s, _ := newTestServer(t, Config{}, bigSnapshot(200))
	addr := serve(t, s)
	const name = "big.default.svc.gantry.internal."
	query := func(bufsize uint16) *miekg.Msg {
		q := new(miekg.Msg)
		q.SetQuestion(name, miekg.TypeA)
		if bufsize > 0 {
			q.SetEdns0(bufsize, false)
		}
		return q
	}
	var answers512 int
	for _, tt := range []struct {
		name    string
		network string
		bufsize uint16
		limit   int
		full    bool
	}{
		{"UDP without EDNS0 is cut at 512 bytes with TC", "udp", 0, 512, false},
		{"UDP with EDNS0 512 is cut at 512 bytes with TC", "udp", 512, 512, false},
		{"UDP with EDNS0 1232 is cut at 1232 bytes with TC", "udp", 1232, 1232, false},
		{"UDP with EDNS0 4096 is still cut at our 1232 byte limit", "udp", 4096, 1232, false},
		{"TCP gets all 200 addresses", "tcp", 0, miekg.MaxMsgSize, true},
		{"TCP with EDNS0 gets all 200 addresses", "tcp", 512, miekg.MaxMsgSize, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m, size := exchange(t, addr, tt.network, query(tt.bufsize))
			if size > tt.limit {
				t.Errorf("answer is %d bytes, over the limit of %d", size, tt.limit)
			}
			if tt.full {
				if m.Truncated || len(m.Answer) != 200 {
					t.Fatalf("TC %v with %d answers, want all 200 and no TC", m.Truncated, len(m.Answer))
				}
				return
			}
			if !m.Truncated {
				t.Fatalf("TC not set with %d of 200 answers in %d bytes", len(m.Answer), size)
			}
			if (tt.bufsize > 0) != (m.IsEdns0() != nil) {
				t.Errorf("OPT in answer %v, want %v", m.IsEdns0() != nil, tt.bufsize > 0)
			}
			if tt.limit == 512 {
				answers512 = len(m.Answer)
			} else if len(m.Answer) <= answers512 {
				t.Errorf("%d answers with a %d byte buffer, no more than the %d of 512 bytes", len(m.Answer), tt.bufsize, answers512)
			}
		})
	}

	t.Run("dig sees TC over UDP and retries over TCP by itself", func(t *testing.T) {
		out := dig(t, addr, "+ignore", "+notcp", "+bufsize=1232", name, "A")
		if !strings.Contains(out, " tc") {
			t.Fatalf("want the tc flag over UDP:\n%s", out)
		}
		lines := sortedLines(dig(t, addr, "+short", name, "A"))
		if len(lines) != 200 {
			t.Fatalf("dig got %d addresses after the TCP retry, want 200", len(lines))
		}
	})
}

func TestSRVWhoseAdditionalRecordsDoNotFitIsNotTruncated(t *testing.T) {
	s, _ := newTestServer(t, Config{}, bigSnapshot(18))
	addr := serve(t, s)
	q := new(miekg.Msg)
	q.SetQuestion("_http._tcp.big.default.svc.gantry.internal.", miekg.TypeSRV)
	q.SetEdns0(1232, false)
	m, size := exchange(t, addr, "udp", q)
	if len(m.Answer) != 18 {
		t.Fatalf("%d SRV records in %d bytes, want all 18", len(m.Answer), size)
	}
	if len(m.Extra) >= 18 {
		t.Fatalf("%d additional records: the test needs them not to fit", len(m.Extra))
	}
	if m.Truncated {
		t.Fatal("TC set although the whole answer is there")
	}
}

// scriptedUpstream runs a DNS server on loopback whose answers come from h.
func scriptedUpstream(t *testing.T, h miekg.HandlerFunc) string {
	t.Helper()
	pc, ln, err := listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{}, 2)
	for _, srv := range []*miekg.Server{
		{PacketConn: pc, Handler: h, NotifyStartedFunc: func() { started <- struct{}{} }},
		{Listener: ln, Handler: h, NotifyStartedFunc: func() { started <- struct{}{} }},
	} {
		go srv.ActivateAndServe()
		t.Cleanup(func() { srv.Shutdown() })
	}
	<-started
	<-started
	return pc.LocalAddr().String()
}

func answerA(name string) miekg.RR {
	return &miekg.A{Hdr: miekg.RR_Header{Name: name, Rrtype: miekg.TypeA, Class: miekg.ClassINET, Ttl: 300}, A: net.ParseIP("192.0.2.1")}
}

// upstream is a real DNS server on loopback standing in for the host's
// resolver.
type upstream struct {
	addr    string
	queries atomic.Int64
	names   chan string
}

func startUpstream(t *testing.T, rcode int) *upstream {
	t.Helper()
	u := &upstream{names: make(chan string, 100)}
	h := miekg.HandlerFunc(func(w miekg.ResponseWriter, r *miekg.Msg) {
		u.queries.Add(1)
		select {
		case u.names <- r.Question[0].Name:
		default:
		}
		m := new(miekg.Msg)
		m.SetReply(r)
		m.RecursionAvailable = true
		m.Rcode = rcode
		q := r.Question[0]
		if rcode == miekg.RcodeSuccess {
			switch strings.ToLower(q.Name) {
			case "example.test.":
				m.Answer = append(m.Answer, answerA(q.Name))
			case "big.example.test.":
				for i := range 40 {
					m.Answer = append(m.Answer, &miekg.TXT{
						Hdr: miekg.RR_Header{Name: q.Name, Rrtype: miekg.TypeTXT, Class: miekg.ClassINET, Ttl: 300},
						Txt: []string{fmt.Sprintf("%02d-%s", i, strings.Repeat("x", 60))},
					})
				}
			default:
				m.Rcode = miekg.RcodeNameError
			}
		}
		size := miekg.MaxMsgSize
		if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
			size = miekg.MinMsgSize
			if opt := r.IsEdns0(); opt != nil {
				size = int(opt.UDPSize())
			}
		}
		m.Truncate(size)
		w.WriteMsg(m)
	})
	u.addr = scriptedUpstream(t, h)
	return u
}

// deadAddr is a UDP address where nothing answers: bound, never read.
func deadAddr(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.LocalAddr().String()
}

func TestForwarding(t *testing.T) {
	good := startUpstream(t, miekg.RcodeSuccess)
	failing := startUpstream(t, miekg.RcodeServerFailure)
	dead := deadAddr(t)
	newServer := func(t *testing.T, upstreams ...string) (*Server, string) {
		s, _ := newTestServer(t, Config{Upstreams: upstreams, ForwardTimeout: 300 * time.Millisecond}, tableSnapshot())
		return s, serve(t, s)
	}
	query := func(name string, qtype uint16) *miekg.Msg {
		q := new(miekg.Msg)
		q.SetQuestion(name, qtype)
		return q
	}

	t.Run("a name outside our zones is answered by the upstream", func(t *testing.T) {
		_, addr := newServer(t, good.addr)
		m, _ := exchange(t, addr, "udp", query("example.test.", miekg.TypeA))
		if m.Rcode != miekg.RcodeSuccess || len(m.Answer) != 1 || m.Answer[0].(*miekg.A).A.String() != "192.0.2.1" {
			t.Fatalf("want 192.0.2.1 from upstream:\n%v", m)
		}
		if !m.RecursionAvailable || m.Authoritative {
			t.Errorf("RA %v AA %v, want RA and not AA", m.RecursionAvailable, m.Authoritative)
		}
		if m.IsEdns0() != nil {
			t.Errorf("answer has an OPT the client did not ask for")
		}
	})
	t.Run("upstream NXDOMAIN is passed on", func(t *testing.T) {
		_, addr := newServer(t, good.addr)
		m, _ := exchange(t, addr, "udp", query("nope.example.test.", miekg.TypeA))
		if m.Rcode != miekg.RcodeNameError {
			t.Fatalf("rcode %s, want NXDOMAIN", miekg.RcodeToString[m.Rcode])
		}
	})
	t.Run("an answer truncated upstream is fetched over TCP, then truncated for a UDP client", func(t *testing.T) {
		_, addr := newServer(t, good.addr)
		q := query("big.example.test.", miekg.TypeTXT)
		q.SetEdns0(1232, false)
		m, size := exchange(t, addr, "udp", q)
		if !m.Truncated || size > 1232 {
			t.Fatalf("UDP answer of %d bytes, TC %v; want TC within 1232 bytes", size, m.Truncated)
		}
		m, _ = exchange(t, addr, "tcp", query("big.example.test.", miekg.TypeTXT))
		if m.Truncated || len(m.Answer) != 40 {
			t.Fatalf("TCP answer has %d records, TC %v; want all 40", len(m.Answer), m.Truncated)
		}
	})
	t.Run("a dead upstream makes way for the next", func(t *testing.T) {
		_, addr := newServer(t, dead, good.addr)
		m, _ := exchange(t, addr, "udp", query("example.test.", miekg.TypeA))
		if m.Rcode != miekg.RcodeSuccess || len(m.Answer) != 1 {
			t.Fatalf("want an answer from the second upstream:\n%v", m)
		}
	})
	t.Run("an upstream answering SERVFAIL makes way for the next", func(t *testing.T) {
		_, addr := newServer(t, failing.addr, good.addr)
		m, _ := exchange(t, addr, "udp", query("example.test.", miekg.TypeA))
		if m.Rcode != miekg.RcodeSuccess || len(m.Answer) != 1 {
			t.Fatalf("want an answer from the second upstream:\n%v", m)
		}
	})
	t.Run("SERVFAIL when every upstream fails", func(t *testing.T) {
		_, addr := newServer(t, dead, failing.addr)
		start := time.Now()
		m, _ := exchange(t, addr, "udp", query("example.test.", miekg.TypeA))
		if m.Rcode != miekg.RcodeServerFailure {
			t.Fatalf("rcode %s, want SERVFAIL", miekg.RcodeToString[m.Rcode])
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("took %v; the forward timeout is 300ms per upstream", took)
		}
	})
	t.Run("queries beyond the forwarding limit get SERVFAIL at once", func(t *testing.T) {
		s, _ := newTestServer(t, Config{Upstreams: []string{dead}, ForwardTimeout: 500 * time.Millisecond, MaxConcurrentForwards: 1}, snapshot(0))
		addr := serve(t, s)
		first := make(chan *miekg.Msg, 1)
		go func() {
			c := &miekg.Client{Timeout: 2 * time.Second}
			m, _, _ := c.Exchange(query("example.test.", miekg.TypeA), addr)
			first <- m
		}()
		// Wait until the first query holds the only slot.
		for deadline := time.Now().Add(2 * time.Second); len(s.fwd.slots) == 0; {
			if time.Now().After(deadline) {
				t.Fatal("the first query never reached the forwarder")
			}
			time.Sleep(time.Millisecond)
		}
		start := time.Now()
		m, _ := exchange(t, addr, "udp", query("example.org.", miekg.TypeA))
		if m.Rcode != miekg.RcodeServerFailure {
			t.Fatalf("rcode %s, want SERVFAIL", miekg.RcodeToString[m.Rcode])
		}
		if took := time.Since(start); took > 250*time.Millisecond {
			t.Errorf("the second query waited %v; it should fail at once", took)
		}
		if m := <-first; m == nil || m.Rcode != miekg.RcodeServerFailure {
			t.Errorf("the first query: %v, want SERVFAIL after the dead upstream's timeout", m)
		}
	})
	t.Run("names in our zones are never forwarded", func(t *testing.T) {
		before := good.queries.Load()
		_, addr := newServer(t, good.addr)
		for _, q := range []*miekg.Msg{
			query("hello.default.svc.gantry.internal.", miekg.TypeA),
			query("nope.default.svc.gantry.internal.", miekg.TypeA),
			query("gantry.internal.", miekg.TypeTXT),
			query("x.localhost.", miekg.TypeA),
			query("x.localhost.", miekg.TypeTXT),
		} {
			m, _ := exchange(t, addr, "udp", q)
			if !m.Authoritative {
				t.Errorf("%s: not authoritative", q.Question[0].Name)
			}
		}
		if n := good.queries.Load() - before; n != 0 {
			t.Fatalf("upstream got %d queries for our own zones", n)
		}
	})
	t.Run("an upstream that is our own listener is skipped", func(t *testing.T) {
		pc, ln, err := listen("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		self := pc.LocalAddr().String()
		s, _ := newTestServer(t, Config{Upstreams: []string{self}, ForwardTimeout: 300 * time.Millisecond}, snapshot(0))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Serve(ctx, pc, ln) }()
		t.Cleanup(func() { cancel(); <-done })
		waitServing(t, self)
		start := time.Now()
		m, _ := exchange(t, self, "udp", query("example.test.", miekg.TypeA))
		if m.Rcode != miekg.RcodeRefused {
			t.Fatalf("rcode %s, want REFUSED: forwarding to ourselves would loop", miekg.RcodeToString[m.Rcode])
		}
		if took := time.Since(start); took > 200*time.Millisecond {
			t.Fatalf("took %v; the query must not have gone round", took)
		}
	})
}

func TestUpstreamsFromResolvConf(t *testing.T) {
	path := t.TempDir() + "/resolv.conf"
	writeFile(t, path, "search example.com\nnameserver 192.0.2.53\nnameserver 2001:db8::53\noptions ndots:2\n")
	s, err := New(Config{ResolvConf: path}, discovery.NewBroadcaster(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got := *s.fwd.usable.Load()
	if want := []string{"192.0.2.53:53", "[2001:db8::53]:53"}; !slices.Equal(got, want) {
		t.Fatalf("upstreams %q, want %q", got, want)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestSnapshotUpdateIsVisibleAtOnce(t *testing.T) {
	s, b := newTestServer(t, Config{}, snapshot(1, svc("default", "hello", 1, "10.88.0.1")))
	addr := serve(t, s)
	c := &miekg.Client{Net: "udp", Timeout: time.Second}
	var lat []time.Duration
	for i := range 200 {
		ip := fmt.Sprintf("10.89.%d.%d", i/250, i%250+1)
		start := time.Now()
		b.Publish(snapshot(int64(i+2), svc("default", "hello", 1, ip)))
		q := new(miekg.Msg)
		q.SetQuestion("hello.default.svc.gantry.internal.", miekg.TypeA)
		m, _, err := c.Exchange(q, addr)
		if err != nil {
			t.Fatal(err)
		}
		lat = append(lat, time.Since(start))
		if len(m.Answer) != 1 || m.Answer[0].(*miekg.A).A.String() != ip {
			t.Fatalf("update %d: the first query after publishing got %v, want %s", i, m.Answer, ip)
		}
	}
	slices.Sort(lat)
	p99 := lat[len(lat)*99/100]
	t.Logf("publish → answer over UDP: p50 %v, p99 %v", lat[len(lat)/2], p99)
	if p99 > 100*time.Millisecond {
		t.Fatalf("p99 %v over the 100ms budget", p99)
	}
}

func TestMalformedPacketsAreDroppedWithoutHarm(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	s, _ := newTestServer(t, Config{Registerer: reg}, tableSnapshot())
	addr := serve(t, s)
	valid := new(miekg.Msg)
	valid.SetQuestion("hello.default.svc.gantry.internal.", miekg.TypeA)
	vb, _ := valid.Pack()
	packets := map[string][]byte{
		"empty":                        {},
		"short header":                 {0x12, 0x34, 0x01},
		"header only, one question":    {0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0},
		"label longer than the packet": append(append([]byte{}, vb[:12]...), 0x3f, 'a', 'b'),
		"compression pointer loop":     append(append([]byte{}, vb[:12]...), 0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01),
		"question cut short":           vb[:len(vb)-3],
		"random bytes":                 []byte("\x8a\x1f\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff garbage garbage"),
		"a response":                   func() []byte { r := valid.Copy(); r.Response = true; b, _ := r.Pack(); return b }(),
	}
	conn, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for name, p := range packets {
		if _, err := conn.Write(p); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	tcp, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	tcp.Write([]byte{0x00, 0x05, 1, 2, 3, 4, 5})
	tcp.Close()

	// The server is unharmed: a valid query on the same socket is
	// answered (skipping any FORMERR replies to the garbage).
	if _, err := conn.Write(vb); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("no answer to a valid query after garbage: %v", err)
		}
		m := new(miekg.Msg)
		if m.Unpack(buf[:n]) == nil && m.Id == valid.Id && m.Rcode == miekg.RcodeSuccess && len(m.Answer) == 2 {
			break
		}
	}
	if n := counterValue(t, reg, "gantry_dns_dropped_total", map[string]string{"reason": "malformed"}); n < 3 {
		t.Errorf("malformed packets counted %v, want at least 3", n)
	}
}

func TestMetricsCountQueriesByTypeAndRcode(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	s, _ := newTestServer(t, Config{Registerer: reg}, tableSnapshot())
	for range 3 {
		ask(t, s, "hello.default.svc.gantry.internal.", miekg.TypeA)
	}
	ask(t, s, "nope.default.svc.gantry.internal.", miekg.TypeSRV)
	ask(t, s, "hello.default.svc.gantry.internal.", miekg.TypeCAA)
	for _, tt := range []struct {
		typ, rcode string
		want       float64
	}{
		{"A", "NOERROR", 3},
		{"SRV", "NXDOMAIN", 1},
		{"other", "NOERROR", 1},
	} {
		if got := counterValue(t, reg, "gantry_dns_queries_total", map[string]string{"type": tt.typ, "rcode": tt.rcode}); got != tt.want {
			t.Errorf("queries{type=%s,rcode=%s} = %v, want %v", tt.typ, tt.rcode, got, tt.want)
		}
	}
	if _, err := New(Config{Registerer: reg, Upstreams: []string{}}, discovery.NewBroadcaster(), nil); err == nil {
		t.Error("a second server on the same registry was accepted")
	}
}

func counterValue(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue metric
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func TestListenAndServe(t *testing.T) {
	s, _ := newTestServer(t, Config{}, tableSnapshot())
	t.Run("returns nil when its context ends", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.ListenAndServe(ctx, "127.0.0.1:0") }()
		time.Sleep(50 * time.Millisecond)
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("ListenAndServe: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("ListenAndServe did not return after cancel")
		}
	})
	t.Run("fails on a port that is taken", func(t *testing.T) {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		err = s.ListenAndServe(context.Background(), pc.LocalAddr().String())
		if err == nil {
			t.Fatal("ListenAndServe succeeded on a taken port")
		}
	})
	t.Run("Run ends with Close", func(t *testing.T) {
		s2, _ := newTestServer(t, Config{Listen: []string{"127.0.0.1:0", "127.0.0.1:0"}}, nil)
		done := make(chan error, 1)
		go func() { done <- s2.Run(context.Background()) }()
		time.Sleep(50 * time.Millisecond)
		s2.Close()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Run did not return after Close")
		}
	})
}

// FuzzServeDNSWire sends arbitrary bytes to a running server's UDP
// socket, the path a container's or a stranger's packet takes (the
// library's reader, the accept hook, the handler), and checks after each
// that the server still answers a valid query. FuzzServeDNS skips what
// does not parse as a message; this one does not.
//
//	go test ./internal/dns -run '^$' -fuzz FuzzServeDNSWire -fuzztime 60s
func FuzzServeDNSWire(f *testing.F) {
	valid := new(miekg.Msg)
	valid.SetQuestion("hello.default.svc.gantry.internal.", miekg.TypeA)
	vb, err := valid.Pack()
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte{})
	f.Add([]byte{0x12, 0x34, 0x01})
	f.Add(append(append([]byte{}, vb[:12]...), 0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01))
	f.Add(vb[:len(vb)-3])
	f.Add(vb)
	s, _ := newTestServer(f, Config{}, tableSnapshot())
	addr := serve(f, s)
	conn, err := net.Dial("udp", addr)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { conn.Close() })
	buf := make([]byte, 65535)
	f.Fuzz(func(t *testing.T, packet []byte) {
		if _, err := conn.Write(packet); err != nil {
			t.Skip(err) // too large for a datagram
		}
		id := valid.Id + 1
		valid.Id = id
		q, _ := valid.Pack()
		if _, err := conn.Write(q); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		for {
			n, err := conn.Read(buf)
			if err != nil {
				t.Fatalf("no answer to a valid query after %x: %v", packet, err)
			}
			m := new(miekg.Msg)
			if m.Unpack(buf[:n]) == nil && m.Id == id && m.Rcode == miekg.RcodeSuccess && len(m.Answer) > 0 {
				return
			}
		}
	})
}

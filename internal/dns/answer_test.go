package dns

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	miekg "github.com/miekg/dns"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/discovery"
)

// tableSnapshot is the cluster most answer tests run against.
func tableSnapshot() *discovery.Snapshot {
	hello := svc("default", "hello", 2, "10.88.0.10", "10.88.0.11", "10.88.0.12")
	hello.Routes = []v1.Route{{Host: "hello.example.com"}, {Host: "*.wild.example.org"}, {Host: "svc.gantry.internal"}}
	empty := svc("default", "empty", 0, "10.88.0.20")
	api := svc("prod", "api", 2, "10.88.1.5", "fd00::5")
	return snapshot(7, hello, empty, api)
}

func tableServer(t *testing.T) *Server {
	t.Helper()
	s, _ := newTestServer(t, Config{
		LoadBalancer: func() []net.IP { return []net.IP{net.ParseIP("192.0.2.80"), net.ParseIP("2001:db8::80")} },
	}, tableSnapshot())
	return s
}

func TestAnswers(t *testing.T) {
	s := tableServer(t)
	const (
		svcName = "hello.default.svc.gantry.internal."
		noSOA   = ""
	)
	tests := []struct {
		name   string
		qname  string
		qtype  uint16
		rcode  int
		answer []string
		extra  []string
		// soa is the zone whose SOA must be in the authority section,
		// as negative answers need it.
		soa string
	}{
		{"a service name answers its ready instances only", svcName, miekg.TypeA, miekg.RcodeSuccess,
			[]string{"A 10.88.0.10", "A 10.88.0.11"}, nil, noSOA},
		{"a service without IPv6 answers AAAA with NODATA", svcName, miekg.TypeAAAA, miekg.RcodeSuccess,
			nil, nil, "gantry.internal."},
		{"a service name has no MX, NODATA", svcName, miekg.TypeMX, miekg.RcodeSuccess, nil, nil, "gantry.internal."},
		{"an SRV name lists ready instances with their addresses as additional records",
			"_http._tcp." + svcName, miekg.TypeSRV, miekg.RcodeSuccess,
			[]string{"SRV 0 50 8080 hello-0." + svcName, "SRV 0 50 8080 hello-1." + svcName},
			[]string{"A 10.88.0.10", "A 10.88.0.11"}, noSOA},
		{"a udp port's SRV lives under _udp", "_dns._udp." + svcName, miekg.TypeSRV, miekg.RcodeSuccess,
			[]string{"SRV 0 50 53 hello-0." + svcName, "SRV 0 50 53 hello-1." + svcName},
			[]string{"A 10.88.0.10", "A 10.88.0.11"}, noSOA},
		{"a udp port does not exist under _tcp", "_dns._tcp." + svcName, miekg.TypeSRV, miekg.RcodeNameError,
			nil, nil, "gantry.internal."},
		{"an unknown port is NXDOMAIN", "_grpc._tcp." + svcName, miekg.TypeSRV, miekg.RcodeNameError,
			nil, nil, "gantry.internal."},
		{"an instance that is not ready still has its own name", "hello-2." + svcName, miekg.TypeA, miekg.RcodeSuccess,
			[]string{"A 10.88.0.12"}, nil, noSOA},
		{"a name below an instance does not exist", "x.hello-0." + svcName, miekg.TypeA, miekg.RcodeNameError,
			nil, nil, "gantry.internal."},
		{"an unknown app is NXDOMAIN", "nope.default.svc.gantry.internal.", miekg.TypeA, miekg.RcodeNameError,
			nil, nil, "gantry.internal."},
		{"an unknown namespace is NXDOMAIN", "hello.staging.svc.gantry.internal.", miekg.TypeA, miekg.RcodeNameError,
			nil, nil, "gantry.internal."},
		{"a namespace is an empty non-terminal: NODATA", "default.svc.gantry.internal.", miekg.TypeA, miekg.RcodeSuccess,
			nil, nil, "gantry.internal."},
		{"svc.DOMAIN is an empty non-terminal: NODATA", "svc.gantry.internal.", miekg.TypeA, miekg.RcodeSuccess,
			nil, nil, "gantry.internal."},
		{"_tcp under a service is an empty non-terminal: NODATA", "_tcp." + svcName, miekg.TypeSRV, miekg.RcodeSuccess,
			nil, nil, "gantry.internal."},
		{"an unknown name in the zone is NXDOMAIN", "foo.gantry.internal.", miekg.TypeA, miekg.RcodeNameError,
			nil, nil, "gantry.internal."},
		{"the apex has an SOA whose serial is the snapshot revision", "gantry.internal.", miekg.TypeSOA, miekg.RcodeSuccess,
			[]string{"SOA ns.gantry.internal. hostmaster.gantry.internal. 7 60 30 3600 1"}, nil, noSOA},
		{"the apex has an NS", "gantry.internal.", miekg.TypeNS, miekg.RcodeSuccess,
			[]string{"NS ns.gantry.internal."}, nil, noSOA},
		{"the apex has no A: NODATA", "gantry.internal.", miekg.TypeA, miekg.RcodeSuccess, nil, nil, "gantry.internal."},
		{"the nameserver's address is where the query arrived", "ns.gantry.internal.", miekg.TypeA, miekg.RcodeSuccess,
			[]string{"A 10.88.0.1"}, nil, noSOA},
		{"an app with no ready instance answers NODATA", "empty.default.svc.gantry.internal.", miekg.TypeA, miekg.RcodeSuccess,
			nil, nil, "gantry.internal."},
		{"an app with no ready instance has an SRV name with no records", "_http._tcp.empty.default.svc.gantry.internal.",
			miekg.TypeSRV, miekg.RcodeSuccess, nil, nil, "gantry.internal."},
		{"an IPv6 instance answers AAAA", "api.prod.svc.gantry.internal.", miekg.TypeAAAA, miekg.RcodeSuccess,
			[]string{"AAAA fd00::5"}, nil, noSOA},
		{"ANY at a service returns its addresses", "api.prod.svc.gantry.internal.", miekg.TypeANY, miekg.RcodeSuccess,
			[]string{"A 10.88.1.5", "AAAA fd00::5"}, nil, noSOA},
		{"names are case-insensitive", "HeLLo.DEFAULT.svc.Gantry.Internal.", miekg.TypeA, miekg.RcodeSuccess,
			[]string{"A 10.88.0.10", "A 10.88.0.11"}, nil, noSOA},
		{"an apps domain name is the load balancer", "hello.default.localhost.", miekg.TypeA, miekg.RcodeSuccess,
			[]string{"A 192.0.2.80"}, nil, noSOA},
		{"an apps domain name has the load balancer's IPv6 too", "hello.default.localhost.", miekg.TypeAAAA, miekg.RcodeSuccess,
			[]string{"AAAA 2001:db8::80"}, nil, noSOA},
		{"any depth below the apps domain is the load balancer", "a.b.c.LocalHost.", miekg.TypeA, miekg.RcodeSuccess,
			[]string{"A 192.0.2.80"}, nil, noSOA},
		{"the apps domain apex has an SOA", "localhost.", miekg.TypeSOA, miekg.RcodeSuccess,
			[]string{"SOA ns.gantry.internal. hostmaster.gantry.internal. 7 60 30 3600 1"}, nil, noSOA},
		{"an apps domain name has no MX: NODATA", "hello.localhost.", miekg.TypeMX, miekg.RcodeSuccess,
			nil, nil, "localhost."},
		{"a route host is the load balancer", "hello.example.com.", miekg.TypeA, miekg.RcodeSuccess,
			[]string{"A 192.0.2.80"}, nil, noSOA},
		{"a route host matches in any case", "HELLO.example.COM.", miekg.TypeAAAA, miekg.RcodeSuccess,
			[]string{"AAAA 2001:db8::80"}, nil, noSOA},
		{"a wildcard route host matches one label below it", "x.wild.example.org.", miekg.TypeA, miekg.RcodeSuccess,
			[]string{"A 192.0.2.80"}, nil, noSOA},
		{"a wildcard route host does not match two labels below, as the load balancer does not: forwarded (refused here)", "x.y.wild.example.org.",
			miekg.TypeA, miekg.RcodeRefused, nil, nil, noSOA},
		{"a wildcard route host does not match its parent, which is forwarded (refused here)", "wild.example.org.",
			miekg.TypeA, miekg.RcodeRefused, nil, nil, noSOA},
		{"a route host's other types are NODATA from us, not forwarded", "hello.example.com.", miekg.TypeTXT,
			miekg.RcodeSuccess, nil, nil, "hello.example.com."},
		{"a route host cannot take over a name of the cluster zone", "svc.gantry.internal.", miekg.TypeA,
			miekg.RcodeSuccess, nil, nil, "gantry.internal."},
		{"a name outside our zones with no upstream is refused", "example.net.", miekg.TypeA, miekg.RcodeRefused,
			nil, nil, noSOA},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := ask(t, s, tt.qname, tt.qtype)
			if m.Rcode != tt.rcode {
				t.Fatalf("rcode %s, want %s\n%v", miekg.RcodeToString[m.Rcode], miekg.RcodeToString[tt.rcode], m)
			}
			if got := rdata(m.Answer); !slices.Equal(got, tt.answer) {
				t.Errorf("answer %q, want %q", got, tt.answer)
			}
			if got := rdata(m.Extra); !slices.Equal(got, tt.extra) {
				t.Errorf("additional %q, want %q", got, tt.extra)
			}
			var soa string
			for _, rr := range m.Ns {
				if rr.Header().Rrtype == miekg.TypeSOA {
					soa = rr.Header().Name
				}
			}
			if soa != tt.soa {
				t.Errorf("authority SOA of %q, want %q\n%v", soa, tt.soa, m)
			}
			ours := tt.rcode != miekg.RcodeRefused
			if m.Authoritative != ours {
				t.Errorf("AA %v, want %v", m.Authoritative, ours)
			}
			for _, rr := range m.Answer {
				if !strings.EqualFold(rr.Header().Name, tt.qname) {
					t.Errorf("answer owner %q, want %q", rr.Header().Name, tt.qname)
				}
			}
		})
	}
}

func TestAnswerOwnerKeepsTheClientsSpelling(t *testing.T) {
	s := tableServer(t)
	const qname = "HeLLo.Default.SVC.gantry.internal."
	m := ask(t, s, qname, miekg.TypeA)
	if len(m.Answer) != 2 {
		t.Fatalf("got %d answers, want 2", len(m.Answer))
	}
	for _, rr := range m.Answer {
		if rr.Header().Name != qname {
			t.Errorf("owner %q, want the query's spelling %q", rr.Header().Name, qname)
		}
	}
	// The shared index records must not have been renamed.
	m = ask(t, s, strings.ToLower(qname), miekg.TypeA)
	for _, rr := range m.Answer {
		if rr.Header().Name != strings.ToLower(qname) {
			t.Errorf("after a mixed-case query, owner %q, want %q", rr.Header().Name, strings.ToLower(qname))
		}
	}
}

func TestProtocolEdges(t *testing.T) {
	s := tableServer(t)
	query := func(name string, qtype uint16) *miekg.Msg {
		q := new(miekg.Msg)
		q.SetQuestion(name, qtype)
		return q
	}
	tests := []headerCase{
		{"a NOTIFY is not implemented", func() *miekg.Msg {
			q := query("gantry.internal.", miekg.TypeSOA)
			q.Opcode = miekg.OpcodeNotify
			return q
		}, miekg.RcodeNotImplemented, false},
		{"an UPDATE is not implemented", func() *miekg.Msg {
			q := query("gantry.internal.", miekg.TypeSOA)
			q.Opcode = miekg.OpcodeUpdate
			return q
		}, miekg.RcodeNotImplemented, false},
		{"a zone transfer is refused", func() *miekg.Msg { return query("gantry.internal.", miekg.TypeAXFR) },
			miekg.RcodeRefused, false},
		{"an incremental zone transfer is refused", func() *miekg.Msg { return query("gantry.internal.", miekg.TypeIXFR) },
			miekg.RcodeRefused, false},
		{"a CHAOS class query is refused", func() *miekg.Msg {
			q := query("version.bind.", miekg.TypeTXT)
			q.Question[0].Qclass = miekg.ClassCHAOS
			return q
		}, miekg.RcodeRefused, false},
		{"a query with no question is a format error", func() *miekg.Msg {
			q := query("gantry.internal.", miekg.TypeA)
			q.Question = nil
			return q
		}, miekg.RcodeFormatError, false},
		{"a query with two questions is a format error", func() *miekg.Msg {
			q := query("gantry.internal.", miekg.TypeA)
			q.Question = append(q.Question, q.Question[0])
			return q
		}, miekg.RcodeFormatError, false},
		{"a query for the OPT type is a format error", func() *miekg.Msg { return query("gantry.internal.", miekg.TypeOPT) },
			miekg.RcodeFormatError, false},
		{"EDNS version 1 gets BADVERS with an OPT", func() *miekg.Msg {
			q := query("gantry.internal.", miekg.TypeSOA)
			q.SetEdns0(1232, false)
			q.IsEdns0().SetVersion(1)
			return q
		}, miekg.RcodeBadVers, true},
		{"two OPT records are a format error", func() *miekg.Msg {
			q := query("gantry.internal.", miekg.TypeSOA)
			q.SetEdns0(1232, false)
			q.Extra = append(q.Extra, q.Extra[0])
			return q
		}, miekg.RcodeFormatError, false},
		{"an EDNS query gets an OPT back", func() *miekg.Msg {
			q := query("gantry.internal.", miekg.TypeSOA)
			q.SetEdns0(4096, true)
			return q
		}, miekg.RcodeSuccess, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := tt.make()
			m := exchangeHandler(t, s, q, false)
			if m.Rcode != tt.rcode {
				t.Fatalf("rcode %s, want %s\n%v", miekg.RcodeToString[m.Rcode], miekg.RcodeToString[tt.rcode], m)
			}
			if got := m.IsEdns0() != nil; got != tt.wantOPT {
				t.Fatalf("OPT in answer %v, want %v\n%v", got, tt.wantOPT, m)
			}
		})
	}

	t.Run("a response sent to us gets no answer", func(t *testing.T) {
		q := query("gantry.internal.", miekg.TypeSOA)
		q.Response = true
		w := newRecorder(false)
		s.ServeDNS(w, q)
		if len(w.out) != 0 {
			t.Fatalf("answered a response with %d packets", len(w.out))
		}
	})
	t.Run("the OPT echoes the DO bit and advertises our UDP size", func(t *testing.T) {
		q := query("gantry.internal.", miekg.TypeSOA)
		q.SetEdns0(4096, true)
		opt := exchangeHandler(t, s, q, false).IsEdns0()
		if !opt.Do() || opt.UDPSize() != DefaultMaxUDPSize || opt.Version() != 0 {
			t.Fatalf("OPT %v, want DO set, udp %d, version 0", opt, DefaultMaxUDPSize)
		}
	})
}

func TestConfigRejectsBadDomains(t *testing.T) {
	b := discovery.NewBroadcaster()
	for _, tt := range []struct {
		name string
		cfg  Config
	}{
		{"the root zone", Config{Domain: "."}},
		{"a domain with an underscore", Config{Domain: "my_cluster.internal"}},
		{"the same name for both zones", Config{Domain: "gantry.test", AppsDomain: "gantry.test."}},
		{"an upstream that is not an IP", Config{Upstreams: []string{"dns.google"}}},
	} {
		t.Run(tt.name+" is rejected", func(t *testing.T) {
			s, err := New(tt.cfg, b, nil)
			if err == nil {
				s.Close()
				t.Fatal("New succeeded")
			}
			if !errors.Is(err, v1.ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
		})
	}
}

func TestIndexReusesUnchangedServicesOnly(t *testing.T) {
	z := newZones(&Config{Domain: "gantry.internal.", AppsDomain: "localhost.", TTL: DefaultTTL})
	a := svc("default", "a", 1, "10.88.0.1")
	b := svc("default", "b", 1, "10.88.0.2")
	prev := buildIndex(&z, snapshot(1, a, b), nil)

	// b becomes ready on a second instance; a is an equal copy, as a
	// source that rebuilds every Service would hand it over.
	aCopy := svc("default", "a", 1, "10.88.0.1")
	b2 := svc("default", "b", 2, "10.88.0.2", "10.88.0.3")
	next := buildIndex(&z, snapshot(2, aCopy, b2), prev)

	if next.services["a.default"] != prev.services["a.default"] {
		t.Error("the records of an unchanged service were rebuilt")
	}
	if next.services["b.default"] == prev.services["b.default"] {
		t.Fatal("the records of a changed service were reused")
	}
	set := next.lookup(&z, "b.default.svc.gantry.internal.")
	if got := rdata(set.a); !slices.Equal(got, []string{"A 10.88.0.2", "A 10.88.0.3"}) {
		t.Fatalf("b answers %q after the change", got)
	}
	if soa := next.apex.soa[0].(*miekg.SOA); soa.Serial != 2 {
		t.Fatalf("SOA serial %d, want the new revision 2", soa.Serial)
	}

	// An instance of a that starts draining changes no record, but the
	// address it still has must count as a's namespace's (route scoping).
	aDraining := svc("default", "a", 1, "10.88.0.1")
	aDraining.Draining = []discovery.Endpoint{{Instance: "a-old", IP: "10.88.0.9"}}
	last := buildIndex(&z, snapshot(3, aDraining, b2), next)
	if got := last.instanceNamespaces(&z, netip.MustParseAddr("10.88.0.9")); !slices.Equal(got, []string{"default"}) {
		t.Fatalf("namespaces at a draining instance's address: %q, want [default]", got)
	}
}

// TestConcurrentQueriesDuringUpdates is for -race: answers share the
// index's records and slices while snapshots keep replacing the index.
func TestConcurrentQueriesDuringUpdates(t *testing.T) {
	s, b := newTestServer(t, Config{}, bigSnapshot(40))
	stop := make(chan struct{})
	published := make(chan struct{})
	go func() {
		defer close(published)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			b.Publish(bigSnapshot(30 + i%20))
		}
	}()
	names := []struct {
		name  string
		qtype uint16
	}{
		{"_http._tcp.big.default.svc.gantry.internal.", miekg.TypeSRV},
		{"_HTTP._tcp.Big.default.svc.gantry.internal.", miekg.TypeSRV},
		{"big.default.svc.gantry.internal.", miekg.TypeA},
		{"BIG.default.svc.gantry.internal.", miekg.TypeANY},
	}
	done := make(chan error, 8)
	for g := range 8 {
		go func() {
			for i := range 300 {
				n := names[(g+i)%len(names)]
				q := new(miekg.Msg)
				q.SetQuestion(n.name, n.qtype)
				if i%2 == 0 {
					q.SetEdns0(uint16(512+i), false)
				}
				w := newRecorder(i%3 == 0)
				s.ServeDNS(w, q)
				m := new(miekg.Msg)
				if len(w.out) != 1 || m.Unpack(w.out[0]) != nil || m.Rcode != miekg.RcodeSuccess || len(m.Answer) == 0 {
					done <- fmt.Errorf("%s: bad answer %v", n.name, m)
					return
				}
			}
			done <- nil
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
	close(stop)
	<-published
}

// During a rollout that moves a port, an old instance's SRV record gives
// the port it listens on (Endpoint.Ports), the new ones the App's.
func TestSRVGivesEachInstancesOwnPort(t *testing.T) {
	moved := svc("default", "web", 2, "10.88.0.30", "10.88.0.31")
	moved.Ports[0].Port = 9090
	moved.Ready[0].Ports = map[string]int{"http": 8080}
	s, _ := newTestServer(t, Config{}, snapshot(3, moved))
	m := ask(t, s, "_http._tcp.web.default.svc.gantry.internal.", miekg.TypeSRV)
	got := map[string]uint16{}
	for _, rr := range m.Answer {
		if srv, ok := rr.(*miekg.SRV); ok {
			got[srv.Target] = srv.Port
		}
	}
	if got["web-0.web.default.svc.gantry.internal."] != 8080 || got["web-1.web.default.svc.gantry.internal."] != 9090 {
		t.Errorf("SRV ports %v; want web-0 on 8080 (its own), web-1 on 9090", got)
	}
}

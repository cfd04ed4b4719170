package dns

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	miekg "github.com/miekg/dns"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/discovery"
)

// A client in the instance networks that no snapshot lists may be any
// namespace's instance: a new container whose address the agent has not
// reported yet, one of an App just deleted, every container right after a
// server restart. Before, answersRoute took it for "no instance" and gave
// it tenant-a's load balancer for a route host of a public name, where
// the same container got the public answer a moment later. Clients
// outside the instance networks, and this host querying its own gateway
// listener, still get the load balancer.
func TestRouteHostsAnswerUnlistedInstanceNetworkClientsPublicly(t *testing.T) {
	up := startUpstream(t, miekg.RcodeSuccess)
	lb := net.ParseIP("192.0.2.80")
	gateway := &net.UDPAddr{IP: net.IPv4(10, 88, 0, 1), Port: 53}
	for _, tc := range []struct {
		name          string
		local, remote net.Addr
		wantLB        bool
	}{
		{"an unlisted client in the instance network", gateway, &net.UDPAddr{IP: net.IPv4(10, 88, 0, 7), Port: 40000}, false},
		{"an unlisted client in the instance network, IPv6-mapped", gateway, &net.UDPAddr{IP: net.ParseIP("::ffff:10.88.0.7"), Port: 40000}, false},
		{"a client outside the instance network", gateway, &net.UDPAddr{IP: net.IPv4(192, 168, 1, 5), Port: 40000}, true},
		{"this host at its gateway listener", gateway, &net.UDPAddr{IP: net.IPv4(10, 88, 0, 1), Port: 40000}, true},
		{"this host over TCP at its gateway listener", &net.TCPAddr{IP: net.IPv4(10, 88, 0, 1), Port: 53}, &net.TCPAddr{IP: net.IPv4(10, 88, 0, 1), Port: 40000}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			route := svc("tenant-a", "grab", 1, "10.88.5.5")
			route.Routes = []v1.Route{{Host: "*.test"}}
			// tenant-b's App exists, with no instance address reported.
			caller := svc("tenant-b", "caller", 0)
			s, _ := newTestServer(t, Config{
				Upstreams: []string{up.addr}, ForwardTimeout: time.Second,
				LoadBalancer:     func() []net.IP { return []net.IP{lb} },
				InstanceNetworks: []netip.Prefix{netip.MustParsePrefix("10.88.0.0/16")},
			}, snapshot(3, route, caller))
			q := new(miekg.Msg)
			q.SetQuestion("example.test.", miekg.TypeA)
			w := &recorder{local: tc.local, remote: tc.remote}
			s.ServeDNS(w, q)
			if len(w.out) != 1 {
				t.Fatalf("got %d answers, want 1", len(w.out))
			}
			m := new(miekg.Msg)
			if err := m.Unpack(w.out[0]); err != nil {
				t.Fatal(err)
			}
			gotLB := len(m.Answer) == 1 && m.Answer[0].(*miekg.A).A.Equal(lb)
			if gotLB != tc.wantLB {
				t.Fatalf("answer %v (load balancer: %v, want %v)", rdata(m.Answer), gotLB, tc.wantLB)
			}
		})
	}
}

func TestConfigRejectsAnInvalidInstanceNetwork(t *testing.T) {
	s, err := New(Config{Upstreams: []string{}, InstanceNetworks: []netip.Prefix{{}}}, discovery.NewBroadcaster(), nil)
	if err == nil {
		s.Close()
	}
	if !errors.Is(err, v1.ErrInvalid) {
		t.Fatalf("New: %v, want an error wrapping ErrInvalid", err)
	}
}

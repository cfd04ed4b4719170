package dns

import (
	"net"
	"testing"
	"time"

	miekg "github.com/miekg/dns"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/discovery"
)

// A route host outside the apps domain can be any public name. Gantry
// answers it with the load balancer for the route's own namespace and for
// clients that are not instances, but an instance of another namespace
// gets the public answer: one tenant's route for github.com (or *.com)
// must not redirect every other tenant's lookups of it. Before, every
// client got the load balancer.
func TestRouteHostsAnswerOnlyTheirNamespacesInstances(t *testing.T) {
	up := startUpstream(t, miekg.RcodeSuccess)
	lb := net.ParseIP("192.0.2.80")
	const client = "10.88.0.7" // the test recorder's client address
	for _, tc := range []struct {
		name  string
		route string
		ask   string
		at    string // namespace of the instance at the client's address, "" for none
		// draining: that instance is being deleted (out of All, in
		// Draining).
		draining bool
		wantLB   bool
	}{
		{"the route's own namespace", "example.test", "example.test.", "tenant-a", false, true},
		{"another namespace's instance", "example.test", "example.test.", "tenant-b", false, false},
		{"a wildcard, another namespace", "*.test", "example.test.", "tenant-b", false, false},
		{"another namespace's draining instance", "example.test", "example.test.", "tenant-b", true, false},
		{"the route's own namespace's draining instance", "example.test", "example.test.", "tenant-a", true, true},
		{"a wildcard, own namespace", "*.test", "example.test.", "tenant-a", false, true},
		{"a client that is no instance", "example.test", "example.test.", "", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			route := svc("tenant-a", "grab", 1, "10.88.5.5")
			route.Routes = []v1.Route{{Host: tc.route}}
			services := []*discovery.Service{route}
			if tc.at != "" {
				caller := svc(tc.at, "caller", 1, client)
				if tc.draining {
					caller.Draining, caller.All, caller.Ready = caller.All, nil, nil
				}
				services = append(services, caller)
			}
			s, _ := newTestServer(t, Config{
				Upstreams: []string{up.addr}, ForwardTimeout: time.Second,
				LoadBalancer: func() []net.IP { return []net.IP{lb} },
			}, snapshot(3, services...))
			before := up.queries.Load()
			m := ask(t, s, tc.ask, miekg.TypeA)
			gotLB := len(m.Answer) == 1 && m.Answer[0].(*miekg.A).A.Equal(lb)
			if gotLB != tc.wantLB {
				t.Fatalf("answer %v (load balancer: %v, want %v)", rdata(m.Answer), gotLB, tc.wantLB)
			}
			if forwarded := up.queries.Load() > before; forwarded == tc.wantLB {
				t.Fatalf("forwarded upstream: %v; want %v", forwarded, !tc.wantLB)
			}
		})
	}
}

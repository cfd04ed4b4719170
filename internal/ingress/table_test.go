package ingress

import (
	"fmt"
	"slices"
	"sync/atomic"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/discovery"
)

func TestCanonicalHost(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"hello.default.localhost", "hello.default.localhost"},
		{"Hello.Default.LOCALHOST:8080", "hello.default.localhost"},
		{"example.com.", "example.com"},
		{"example.com.:443", "example.com"},
		{"[::1]:8080", "::1"},
		{"::1", "::1"},
		{"", ""},
	} {
		if got := canonicalHost(tc.in); got != tc.want {
			t.Errorf("canonicalHost(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestRoutingTable(t *testing.T) {
	ports := []v1.Port{
		{Name: "web", Port: 8080, Protocol: v1.ProtocolHTTP},
		{Name: "admin", Port: 9090, Protocol: v1.ProtocolHTTP},
		{Name: "db", Port: 5432, Protocol: v1.ProtocolTCP, Expose: "tcp"},
	}
	ready := []discovery.Endpoint{{Instance: "i-1", IP: "10.0.0.1"}}
	snap := snapshot(
		&discovery.Service{Namespace: "default", Name: "hello", Ports: ports, Ready: ready},
		&discovery.Service{Namespace: "shop", Name: "api", Ports: ports, Ready: ready, Routes: []v1.Route{
			{Host: "shop.example.com", Path: "/api"},
			{Host: "shop.example.com", Path: "/api/admin/", Port: "admin"},
			{Host: "*.tenants.example.com", Path: "/"},
		}},
		&discovery.Service{Namespace: "shop", Name: "web", Ports: ports, Ready: ready, Routes: []v1.Route{
			{Host: "Shop.Example.com", Path: "/"},
			// Collides with api's route: the first app in key order
			// (shop/api) keeps it.
			{Host: "shop.example.com", Path: "/api"},
			// Takes over hello's default host: explicit routes win.
			{Host: "hello.default.localhost", Path: "/"},
		}},
		&discovery.Service{Namespace: "default", Name: "worker", Ports: []v1.Port{{Name: "q", Port: 7000, Protocol: v1.ProtocolTCP}}},
		// A host under shop's wildcard, routed on one path by another
		// namespace.
		&discovery.Service{Namespace: "own", Name: "app", Ports: ports, Ready: ready, Routes: []v1.Route{
			{Host: "own.tenants.example.com", Path: "/only"},
		}},
	)
	b := &tableBuilder{
		cfg: &Config{AppsDomain: "localhost"},
		app: func(ns, name string) *appStats { return &appStats{ns: ns, name: name, key: ns + "/" + name} },
		endpoint: func(key, addr, instance string, app *appStats) *endpoint {
			return &endpoint{key: key, addr: addr, instance: instance, app: app}
		},
	}
	tab := b.build(snap)

	for _, tc := range []struct {
		name, host, path string
		want             string // backend key, "" for no route
		wantAddr         string
	}{
		{"the default host reaches the first http port", "api.shop.localhost", "/anything", "shop/api/web", "10.0.0.1:8080"},
		{"an explicit route takes a default host from its app", "hello.default.localhost", "/", "shop/web/web", ""},
		{"the root route catches other paths", "shop.example.com", "/cart", "shop/web/web", ""},
		{"a path prefix routes its subtree", "shop.example.com", "/api/orders", "shop/api/web", ""},
		{"a path prefix routes itself", "shop.example.com", "/api", "shop/api/web", ""},
		{"a prefix does not match inside a segment", "shop.example.com", "/apis", "shop/web/web", ""},
		{"the longest prefix wins and uses the named port", "shop.example.com", "/api/admin/users", "shop/api/admin", "10.0.0.1:9090"},
		{"a wildcard host matches one label", "acme.tenants.example.com", "/", "shop/api/web", ""},
		{"an exact host routes its own paths", "own.tenants.example.com", "/only/x", "own/app/web", ""},
		// Before, the wildcard's App (another namespace's) got it, with
		// the host's cookies.
		{"an exact host's other paths are not the wildcard's", "own.tenants.example.com", "/login", "", ""},
		{"a wildcard host does not match deeper names", "a.b.tenants.example.com", "/", "", ""},
		{"a wildcard host does not match its own suffix", "tenants.example.com", "/", "", ""},
		{"an app without an http port has no default host", "worker.default.localhost", "/", "", ""},
		{"an unknown host has no route", "nope.example.com", "/", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tab.match(tc.host, tc.path)
			if tc.want == "" {
				if r != nil {
					t.Fatalf("match(%q, %q) = %s, want no route", tc.host, tc.path, r.backend.key)
				}
				return
			}
			if r == nil {
				t.Fatalf("match(%q, %q) = no route, want %s", tc.host, tc.path, tc.want)
			}
			if r.backend.key != tc.want {
				t.Fatalf("match(%q, %q) = %s, want %s", tc.host, tc.path, r.backend.key, tc.want)
			}
			if tc.wantAddr != "" && r.backend.eps[0].addr != tc.wantAddr {
				t.Fatalf("endpoint = %s, want %s", r.backend.eps[0].addr, tc.wantAddr)
			}
		})
	}

	t.Run("an exposed TCP port gets a backend of its own", func(t *testing.T) {
		be := tab.backends[tcpKeyPrefix+"shop/api/db"]
		if be == nil || be.eps[0].addr != "10.0.0.1:5432" {
			t.Fatalf("tcp backend = %+v", be)
		}
	})
	t.Run("collisions are reported with both owners", func(t *testing.T) {
		found := false
		for _, c := range b.conflicts {
			if c.host == "shop.example.com" && c.path == "/api" && c.winner == "shop/api" && c.loser == "shop/web" {
				found = true
			}
		}
		if !found {
			t.Fatalf("conflicts = %+v", b.conflicts)
		}
	})
	t.Run("SNI is answered only for routed hosts, by the host of their routes", func(t *testing.T) {
		for host, want := range map[string]string{"shop.example.com": "shop.example.com", "x.tenants.example.com": "*.tenants.example.com",
			"hello.default.localhost": "hello.default.localhost", "evil.example.com": "", "a.x.tenants.example.com": ""} {
			if got, ok := tab.routeHost(host); got != want || ok != (want != "") {
				t.Errorf("routeHost(%q) = %q, %v; want %q", host, got, ok, want)
			}
		}
	})
}

func TestPick(t *testing.T) {
	eps := func(loads ...int64) []*endpoint {
		var out []*endpoint
		for i, l := range loads {
			name := string(rune('a' + i))
			e := &endpoint{key: name, instance: name, addr: "10.0.0." + name + ":80", load: new(atomic.Int64)}
			e.inflight.Store(l)
			e.load.Store(l)
			out = append(out, e)
		}
		return out
	}
	t.Run("round-robin visits every endpoint in turn", func(t *testing.T) {
		be := &backend{eps: eps(0, 0, 0)}
		seen := map[string]int{}
		for i := 0; i < 300; i++ {
			seen[be.pick(0, nil).key]++
		}
		for k, n := range seen {
			if n != 100 {
				t.Fatalf("endpoint %s picked %d times of 300: %v", k, n, seen)
			}
		}
	})
	t.Run("least-requests picks the least loaded", func(t *testing.T) {
		be := &backend{eps: eps(5, 0, 3), least: true}
		for i := 0; i < 10; i++ {
			if e := be.pick(0, nil); e.key != "b" {
				t.Fatalf("picked %s, want b", e.key)
			}
		}
	})
	t.Run("least-requests spreads ties", func(t *testing.T) {
		be := &backend{eps: eps(1, 1, 1), least: true}
		seen := map[string]bool{}
		for i := 0; i < 3; i++ {
			seen[be.pick(0, nil).key] = true
		}
		if len(seen) != 3 {
			t.Fatalf("ties went to %v", seen)
		}
	})
	t.Run("ejected endpoints are skipped", func(t *testing.T) {
		es := eps(0, 0)
		es[0].ejected.Store(100)
		be := &backend{eps: es}
		for i := 0; i < 10; i++ {
			if e := be.pick(50, nil); e.key != "b" {
				t.Fatalf("picked %s, want b", e.key)
			}
		}
		if e := be.pick(200, nil); e == nil {
			t.Fatal("no pick after cooldown")
		}
	})
	t.Run("when all are ejected one is still used", func(t *testing.T) {
		es := eps(0, 0)
		es[0].ejected.Store(100)
		es[1].ejected.Store(100)
		if e := (&backend{eps: es}).pick(50, nil); e == nil {
			t.Fatal("pick = nil, want an ejected endpoint rather than none")
		}
	})
	t.Run("the skipped endpoint is never picked", func(t *testing.T) {
		es := eps(0, 0)
		be := &backend{eps: es}
		for i := 0; i < 10; i++ {
			if e := be.pick(0, es[0]); e != es[1] {
				t.Fatalf("picked %v", e)
			}
		}
		if e := (&backend{eps: es[:1]}).pick(0, es[0]); e != nil {
			t.Fatal("picked the skipped endpoint")
		}
	})
	// A request's first try went to an endpoint that then left the table
	// (readiness flapped) and came back as a new object for the same
	// instance. The retry must not go back to that instance.
	for _, least := range []bool{false, true} {
		t.Run(fmt.Sprintf("a retry skips the instance after a flap (least=%v)", least), func(t *testing.T) {
			es := eps(0, 5)
			failed := es[0]
			back := &endpoint{key: failed.key, instance: failed.instance, addr: failed.addr, load: new(atomic.Int64)}
			be := &backend{eps: []*endpoint{back, es[1]}, least: least}
			for i := 0; i < 10; i++ {
				if e := be.pick(0, failed); e != es[1] {
					t.Fatalf("retry picked %s (%p), want the other instance b", e.key, e)
				}
			}
			// The same IP and port under another instance is someone else.
			other := &endpoint{key: "c", instance: "c", addr: failed.addr, load: new(atomic.Int64)}
			if e := (&backend{eps: []*endpoint{other}}).pick(0, failed); e != other {
				t.Fatalf("picked %v, want the new instance at the reused address", e)
			}
		})
	}
}

func TestValidHostPort(t *testing.T) {
	for _, tc := range []struct {
		host string
		ok   bool
	}{
		{"hello.default.localhost", true},
		{"hello.default.localhost:8080", true},
		{"hello.default.localhost:", true},
		{"hello.default.localhost:65535", true},
		{"[::1]:8080", true},
		{"[::1]", true},
		{"::1", true},
		{"hello.default.localhost:abc", false},
		{"hello.default.localhost:99999", false},
		{"hello.default.localhost:123456", false},
		{"hello.default.localhost:-1", false},
		{"[::1]x", false},
		{"[::1]:http", false},
	} {
		if got := validHostPort(tc.host); got != tc.ok {
			t.Errorf("validHostPort(%q) = %v, want %v", tc.host, got, tc.ok)
		}
	}
}

// During a rollout that moves a port, each instance is dialled on its own
// number (Endpoint.Ports), for HTTP and L4 alike: the old ones on the old
// port, the new ones on the App's.
func TestBackendsUseEachInstancesOwnPort(t *testing.T) {
	ports := []v1.Port{{Name: "web", Port: 9090, Protocol: v1.ProtocolHTTP}, {Name: "db", Port: 6432, Protocol: v1.ProtocolTCP, Expose: "tcp"}}
	ready := []discovery.Endpoint{
		{Instance: "old", IP: "10.0.0.1", Ports: map[string]int{"web": 8080, "db": 5432}},
		{Instance: "new", IP: "10.0.0.2"},
	}
	b := &tableBuilder{
		cfg: &Config{AppsDomain: "localhost"},
		app: func(ns, name string) *appStats { return &appStats{ns: ns, name: name, key: ns + "/" + name} },
		endpoint: func(key, addr, instance string, app *appStats) *endpoint {
			return &endpoint{key: key, addr: addr, instance: instance, app: app}
		},
	}
	tab := b.build(snapshot(&discovery.Service{Namespace: "default", Name: "web", Ports: ports, Ready: ready}))
	r := tab.match("web.default.localhost", "/")
	if r == nil {
		t.Fatal("no route for web.default.localhost")
	}
	var got []string
	for _, e := range r.backend.eps {
		got = append(got, e.addr)
	}
	if want := []string{"10.0.0.1:8080", "10.0.0.2:9090"}; !slices.Equal(got, want) {
		t.Errorf("HTTP endpoints %v; want %v", got, want)
	}
	be := tab.backends[tcpKeyPrefix+"default/web/db"]
	if be == nil || len(be.eps) != 2 || be.eps[0].addr != "10.0.0.1:5432" || be.eps[1].addr != "10.0.0.2:6432" {
		t.Errorf("L4 backend %+v; want the old instance on 5432, the new on 6432", be)
	}

	// An instance without a port of that name (a rename: 0) serves
	// none of its traffic.
	ready[0].Ports = map[string]int{"web": 0, "db": 5432}
	tab = b.build(snapshot(&discovery.Service{Namespace: "default", Name: "web", Ports: ports, Ready: ready}))
	r = tab.match("web.default.localhost", "/")
	if r == nil || len(r.backend.eps) != 1 || r.backend.eps[0].addr != "10.0.0.2:9090" {
		t.Errorf("HTTP endpoints with the old instance lacking port web: %+v; want only the new one", r)
	}
}

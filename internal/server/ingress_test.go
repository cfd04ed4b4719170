package server

import (
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/discovery"
)

func TestRouteTLS(t *testing.T) {
	svc := func(ns, name string, routes ...v1.Route) *discovery.Service {
		return &discovery.Service{Namespace: ns, Name: name, Routes: routes}
	}
	services := map[string]*discovery.Service{
		"a/shop":    svc("a", "shop", v1.Route{Host: "shop.example.com", TLS: "shop-cert"}),
		"b/tenants": svc("b", "tenants", v1.Route{Host: "*.tenants.example.com", TLS: "auto"}),
		"c/acme":    svc("c", "acme", v1.Route{Host: "acme.tenants.example.com", TLS: "acme-cert"}),
		"d/plain":   svc("d", "plain", v1.Route{Host: "plain.example.com"}),
		// A host with routes of its own, none with TLS, under another
		// namespace's wildcard: it was given the wildcard's certificate.
		"g/mine": svc("g", "mine", v1.Route{Host: "mine.tenants.example.com"}),
		// Two apps on one host, on different paths, naming different
		// secrets: the first by namespace/name wins, every time.
		"e/api": svc("e", "api", v1.Route{Host: "both.example.com", Path: "/api", TLS: "api-cert"}),
		"f/web": svc("f", "web", v1.Route{Host: "both.example.com", Path: "/", TLS: "web-cert"}),
	}
	for _, tc := range []struct{ host, ns, ref string }{
		{"shop.example.com", "a", "shop-cert"},
		{"x.tenants.example.com", "b", "auto"},
		{"acme.tenants.example.com", "c", "acme-cert"}, // an exact route beats the wildcard
		{"a.b.tenants.example.com", "", ""},            // a wildcard covers one label
		{"tenants.example.com", "", ""},
		{"plain.example.com", "", ""},
		{"mine.tenants.example.com", "", ""}, // its own routes, no TLS: not the wildcard's
		{"unknown.example.com", "", ""},
		{"both.example.com", "e", "api-cert"},
	} {
		for range 20 { // map order must not matter
			if ns, _, ref := routeTLS(services, tc.host); ns != tc.ns || ref != tc.ref {
				t.Fatalf("routeTLS(%s) = %q %q, want %q %q", tc.host, ns, ref, tc.ns, tc.ref)
			}
		}
	}
}

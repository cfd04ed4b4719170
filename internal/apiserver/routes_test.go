package apiserver_test

import (
	"context"
	"strings"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// Routes are checked against every other app's at apply: the same host
// and path (compared as routing compares them) is refused naming its
// owner, and so is another namespace's default host, and a route whose
// tls differs from another App's on the same host.
func TestRouteCollisionsAreRefused(t *testing.T) {
	_, create := claimServer(t)
	app := func(ns, name, routes string) (int, string) {
		return create(ns, name, "image: web:v1, ports: [{name: http, port: 8080}], routes: "+routes)
	}
	for _, tc := range []struct {
		ns, name, routes string
		code             int
		says             string
	}{
		{"default", "api", "[{host: shop.example.com, path: /api}]", 201, ""},
		{"default", "api2", "[{host: Shop.Example.com, path: /api/}]", 409, "is already routed to app default/api"},
		{"shop", "web", "[{host: shop.example.com, path: /}]", 201, ""},
		{"shop", "web2", "[{host: shop.example.com}]", 409, "already routed to app shop/web"},
		{"default", "mine", "[{host: hello.default.localhost}]", 201, ""},
		{"shop", "thief", "[{host: hello.default.localhost, path: /admin}]", 409, "default host of app hello in namespace default"},
		{"shop", "wild", "[{host: '*.default.localhost'}]", 409, "namespace default"},
		{"shop", "own", "[{host: hello.shop.localhost}, {host: a.b.c.localhost}]", 201, ""},
		// A host has one certificate: routes of it that set tls agree.
		{"default", "tlsapi", "[{host: tls.example.com, path: /api, tls: auto}]", 201, ""},
		{"default", "tlsok", "[{host: tls.example.com, path: /ok, tls: auto}]", 201, ""},
		{"default", "tlsweb", "[{host: TLS.example.com, path: /web, tls: web-cert}]", 409, "already gets its certificate from tls \\\"auto\\\" of app default/tlsapi"},
		{"shop", "tlsthief", "[{host: tls.example.com, path: /, tls: auto}]", 409, "of app default/tlsapi"},
		{"shop", "tlsplain", "[{host: tls.example.com, path: /plain}]", 201, ""},
		// Names of the service domain are services': DNS would not
		// answer such a route host.
		{"shop", "svcname", "[{host: shop.gantry.internal}]", 400, "the cluster's service domain"},
		{"shop", "svcwild", "[{host: '*.svc.gantry.internal'}]", 400, "service domain"},
		{"shop", "near", "[{host: gantry.internal.example.com}]", 201, ""},
	} {
		code, body := app(tc.ns, tc.name, tc.routes)
		if code != tc.code || !strings.Contains(body, tc.says) {
			t.Errorf("%s/%s with routes %s: %d %s; want %d saying %q", tc.ns, tc.name, tc.routes, code, body, tc.code, tc.says)
		}
	}
}

// claimServer starts a server with namespaces default and shop, and a
// function that creates an App there from the fields of its spec, for
// the checks of what Apps claim (routes, node ports).
func claimServer(t *testing.T) (*testServer, func(ns, name, spec string) (int, string)) {
	t.Helper()
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	if code, body := raw(t, ts, "POST", "/api/v1/namespaces", "application/yaml", []byte("kind: Namespace\nmetadata: {name: shop}\n")); code != 201 {
		t.Fatalf("create namespace: %d %s", code, body)
	}
	return ts, func(ns, name, spec string) (int, string) {
		return raw(t, ts, "POST", "/api/v1/namespaces/"+ns+"/apps", "application/yaml",
			[]byte("kind: App\nmetadata: {name: "+name+"}\nspec: {"+spec+"}\n"))
	}
}

// Apps stored before routes of one host had to agree on tls keep being
// updatable (a rollout, a rollback), as long as the disagreeing route
// stays as it was; changing its tls is checked.
func TestRoutesStoredDisagreeingOnTLSCanStillBeUpdated(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	app := func(name, image, route string) []byte {
		return []byte("kind: App\nmetadata: {name: " + name + "}\nspec: {image: " + image + ", ports: [{name: http, port: 8080}], routes: [" + route + "]}\n")
	}
	put := func(name string, body []byte) (int, string) {
		return raw(t, ts, "PUT", "/api/v1/namespaces/default/apps/"+name+"?apply=true", "application/yaml", body)
	}
	if code, body := put("legacy-a", app("legacy-a", "web:v1", "{host: legacy.example.com, path: /a, tls: auto}")); code != 201 {
		t.Fatalf("legacy-a: %d %s", code, body)
	}
	// What an older server let through, written straight to the store.
	o, err := v1.DecodeManifest(app("legacy-b", "web:v1", "{host: legacy.example.com, path: /b, tls: b-cert}"))
	if err != nil {
		t.Fatal(err)
	}
	o.GetMeta().Namespace = "default"
	if err := ts.Store.Create(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if code, body := put("legacy-b", app("legacy-b", "web:v2", "{host: legacy.example.com, path: /b, tls: b-cert}")); code != 200 {
		t.Fatalf("updating the image of an App stored with a disagreeing tls: %d %s", code, body)
	}
	if code, body := put("legacy-b", app("legacy-b", "web:v2", "{host: legacy.example.com, path: /b, tls: c-cert}")); code != 409 || !strings.Contains(body, "already gets its certificate") {
		t.Fatalf("changing that route's tls to another disagreeing one: %d %s, want 409", code, body)
	}
}

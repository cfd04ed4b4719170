package ingress

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

func TestCleanRequestPath(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"/", "/", true},
		{"/api/orders", "/api/orders", true},
		{"/api/orders/", "/api/orders/", true},
		{"/a.b/.well-known/..x/...", "/a.b/.well-known/..x/...", true},
		{"*", "*", true},
		{"/api/../admin", "/admin", true},
		{"/api/./../admin", "/admin", true},
		{"/../../admin", "/admin", true},
		{"//admin", "/admin", true},
		{"/api//x", "/api/x", true},
		{"/./api/x", "/api/x", true},
		{"/api/x/.", "/api/x/", true},
		{"/api/x/..", "/api/", true},
		{"/api/..", "/", true},
		{"/api/x/../", "/api/", true},
		{"//", "/", true},
		{"/a;b/c\\d", "/a;b/c\\d", true},
		{"/admin;jsessionid=1", "/admin;jsessionid=1", true},
		{"/api/..;/admin", "", false},
		{"/api/.;x/admin", "", false},
		{"/api/..\\admin", "", false},
		{"/api\\..\\admin", "", false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, ok := cleanRequestPath(tc.in)
			if got != tc.want || ok != tc.ok {
				t.Fatalf("cleanRequestPath(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
			}
		})
	}
	t.Run("a clean path costs no allocation", func(t *testing.T) {
		if n := testing.AllocsPerRun(100, func() { cleanRequestPath("/api/v1/orders/123") }); n != 0 {
			t.Fatalf("%v allocations", n)
		}
	})
}

// A route is a boundary: an instance resolves dot-segments and merges
// slashes, so the proxy must do so before it matches, and send on the
// path it matched, or "/api/../admin" reaches the "/api" App's "/admin".
// Every case goes over the front's fast path (GET) and over net/http's
// (POST with a body).
func TestPathTricksStayInsideTheirRoute(t *testing.T) {
	app := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s %s", name, r.RequestURI)
		})
	}
	pa, ia := startInstances(t, "api", 1, app)
	pw, iw := startInstances(t, "web", 1, app)
	pd, id := startInstances(t, "admin", 1, app)
	api := httpService("default", "api", pa, ia...)
	// only.example.com shows nothing of the api App but /api.
	api.Routes = []v1.Route{{Host: "shop.example.com", Path: "/api"}, {Host: "only.example.com", Path: "/api"}}
	web := httpService("default", "web", pw, iw...)
	web.Routes = []v1.Route{{Host: "shop.example.com", Path: "/"}}
	admin := httpService("default", "admin", pd, id...)
	admin.Routes = []v1.Route{{Host: "shop.example.com", Path: "/admin"}}
	h := startProxy(t, Config{}, api, web, admin)

	for _, tc := range []struct {
		name, host, target string
		status             int
		want               string // what the instance answered
	}{
		{"a parent segment leaves the route", "only.example.com", "/api/../admin", 404, ""},
		{"an escaped parent segment leaves the route", "only.example.com", "/api/%2e%2e/admin", 404, ""},
		{"escaped slashes around a parent segment leave the route", "only.example.com", "/api%2F..%2Fadmin", 404, ""},
		{"a parent segment reaches the route it names", "shop.example.com", "/api/../admin/x", 200, "admin-0 /admin/x"},
		{"a doubled slash is merged", "shop.example.com", "//admin", 200, "admin-0 /admin"},
		{"a current segment is dropped", "shop.example.com", "/./api/x", 200, "api-0 /api/x"},
		{"a parent segment within the route stays there", "only.example.com", "/api/x/../y", 200, "api-0 /api/y"},
		{"path parameters do not hide a route", "shop.example.com", "/admin;jsessionid=1", 200, "admin-0 /admin;jsessionid=1"},
		{"a dot-segment with parameters is refused", "only.example.com", "/api/..;/admin", 400, ""},
		{"a dot-segment behind a backslash is refused", "only.example.com", "/api/..%5Cadmin", 400, ""},
		{"a query is not a path", "only.example.com", "/api/x?next=../admin", 200, "api-0 /api/x?next=../admin"},
		{"a clean escaped path goes on as sent", "only.example.com", "/api/a%2Fb", 200, "api-0 /api/a%2Fb"},
		{"an upper-case host with a trailing dot and port is the host", "ONLY.Example.com.:80", "/api/x", 200, "api-0 /api/x"},
		{"an absolute target's host is the host", "shop.example.com", "http://only.example.com/api/../admin", 404, ""},
	} {
		for _, method := range []string{"GET", "POST"} {
			t.Run(method+" "+tc.name, func(t *testing.T) {
				rc := dialRaw(t, h)
				head := method + " " + tc.target + " HTTP/1.1\r\nHost: " + tc.host + "\r\n"
				if method == "POST" {
					head += "Content-Length: 2\r\n\r\nhi"
				} else {
					head += "\r\n"
				}
				rc.send(head)
				resp, body := rc.read(method)
				if resp.StatusCode != tc.status {
					t.Fatalf("%s %s (Host %s): status %d, want %d: %s", method, tc.target, tc.host, resp.StatusCode, tc.status, body)
				}
				if tc.want != "" && body != tc.want {
					t.Fatalf("%s %s (Host %s): instance got %q, want %q", method, tc.target, tc.host, body, tc.want)
				}
				if tc.want == "" && strings.HasPrefix(body, "api-0") {
					t.Fatalf("%s %s (Host %s) reached the api App: %q", method, tc.target, tc.host, body)
				}
			})
		}
	}
}

// FuzzCleanRequestPath checks what routing relies on for any path: a
// cleaned path starts with "/", holds no empty, "." or ".." segment, and
// cleaning it again changes nothing.
func FuzzCleanRequestPath(f *testing.F) {
	for _, p := range []string{"/", "/api/../admin", "//a//b", "/a/./b/..", "/..;/x", "/a\\..\\b", "/x/%2e%2e/y", "*", ""} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p string) {
		clean, ok := cleanRequestPath(p)
		if !ok || p == "" || p[0] != '/' {
			return
		}
		if clean == "" || clean[0] != '/' {
			t.Fatalf("cleanRequestPath(%q) = %q: not absolute", p, clean)
		}
		segs := strings.Split(clean[1:], "/")
		for i, s := range segs {
			if s == "." || s == ".." || (s == "" && i != len(segs)-1) {
				t.Fatalf("cleanRequestPath(%q) = %q: segment %d is %q", p, clean, i, s)
			}
		}
		if again, ok := cleanRequestPath(clean); !ok || again != clean {
			t.Fatalf("cleanRequestPath(%q) = %q, but again gives %q (ok %v)", p, clean, again, ok)
		}
	})
}

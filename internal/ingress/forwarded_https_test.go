package ingress

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// A TLS route serves a plain HTTP request that says X-Forwarded-Proto:
// https (a TLS-terminating proxy in front) instead of redirecting it. The
// instance was then told X-Forwarded-Proto http, so an App that insists
// on HTTPS itself (Rails force_ssl, Django SECURE_PROXY_SSL_HEADER)
// redirected, and the loop the skip avoids happened one hop later. Both
// the fast path (no body) and ReverseProxy's (a body) now say https.
func TestForwardedHTTPSIsPassedOnWhenItSkipsTheRedirect(t *testing.T) {
	port, ins := startInstances(t, "xfp", 1, nil)
	svc := httpService("default", "shop", port, ins...)
	svc.Routes = []v1.Route{{Host: "shop.example.com", Path: "/", TLS: "auto"}}
	tln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := startProxyTLS(t, Config{Certificates: newTestCerts(t)}, tln, svc)
	for _, c := range []struct {
		method string
		body   io.Reader
	}{{http.MethodGet, nil}, {http.MethodPost, strings.NewReader("x=1")}} {
		req, _ := http.NewRequest(c.method, h.url+"/behind-a-proxy", c.body)
		req.Host = "shop.example.com"
		req.Header.Set("X-Forwarded-Proto", "https")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: status %d, want 200 (served, not redirected)", c.method, resp.StatusCode)
		}
		e := decodeEcho(t, b)
		if got := http.Header(e.Header).Values("X-Forwarded-Proto"); len(got) != 1 || got[0] != "https" {
			t.Errorf("%s: served over HTTP because X-Forwarded-Proto said https, but the instance was told X-Forwarded-Proto %v", c.method, got)
		}
		// The port goes with the scheme: the proxy's in front, not
		// the load balancer's plain HTTP one (review helper-167).
		if got := http.Header(e.Header).Values("X-Forwarded-Port"); len(got) != 1 || got[0] != "443" {
			t.Errorf("%s: told X-Forwarded-Proto https with X-Forwarded-Port %v, want 443", c.method, got)
		}
	}
	// A port the proxy in front names is passed on.
	req, _ := http.NewRequest(http.MethodGet, h.url+"/behind-a-proxy", nil)
	req.Host = "shop.example.com"
	req.Header.Set("X-Forwarded-Proto", "https")
	req.Header.Set("X-Forwarded-Port", "8443")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if got := http.Header(decodeEcho(t, b).Header).Values("X-Forwarded-Port"); len(got) != 1 || got[0] != "8443" {
		t.Errorf("X-Forwarded-Port from the proxy in front: the instance got %v, want 8443", got)
	}
}

package apiserver_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/apiserver"
)

// A valid token from an address someone else kept failing from was refused
// (429) before it was even checked: one bad client behind the same proxy
// or NAT (or on the same host) locked every legitimate user of it out. A
// token in use lately is served now; any other from that address still
// gets 429, without a store read.
func TestRateLimitServesAValidTokenFromASharedAddress(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	// The admin works from this address, as people behind one NAT do.
	if code, body := raw(t, ts, http.MethodGet, "/api/v1/whoami", "", nil); code != http.StatusOK {
		t.Fatalf("whoami: %d %s", code, trunc(body))
	}
	for i := 0; i < 60; i++ {
		req, _ := http.NewRequest(http.MethodGet, ts.URL+"/api/v1/namespaces/default/apps", nil)
		req.Header.Set("Authorization", "Bearer gtk_bogus_"+fmt.Sprint(i))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	code, body := raw(t, ts, http.MethodGet, "/api/v1/namespaces/default/apps", "", nil)
	if code != http.StatusOK {
		t.Fatalf("valid admin token after another client's failures from the same address: %d %s", code, trunc(body))
	}
	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/api/v1/namespaces/default/apps", nil)
	req.Header.Set("Authorization", "Bearer gtk_bogus_more")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("another made-up token from the failing address: %d, want 429", resp.StatusCode)
	}
}

// Another method on the fixed endpoints (whoami, join, secret-key/rotate)
// fell through to the object API's 404 (unknown resource) instead of 405.
func TestWrongMethodOnFixedEndpointsIs405(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	for _, c := range []struct{ method, path string }{
		{http.MethodPost, "/api/v1/whoami"},
		{http.MethodGet, "/api/v1/join"},
		{http.MethodGet, "/api/v1/join/renew"},
		{http.MethodGet, "/api/v1/secret-key/rotate"},
		{http.MethodDelete, "/api/v1/secret-key/rotate"},
		// These were 404 "no API at /healthz", a path that exists.
		{http.MethodPost, "/healthz"},
		{http.MethodDelete, "/readyz"},
		{http.MethodPost, "/version"},
		{http.MethodPost, "/metrics"},
	} {
		code, body := raw(t, ts, c.method, c.path, "", nil)
		if code != http.StatusMethodNotAllowed {
			t.Errorf("%s %s = %d %s, want 405", c.method, c.path, code, trunc(body))
		}
	}
}

// The Bearer scheme was matched in one case only: a client or proxy that
// sends "bearer" (the scheme is case-insensitive, RFC 9110) got 401, and
// a failure counted against its address.
func TestBearerSchemeInAnyCase(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	for _, scheme := range []string{"bearer", "BEARER", "Bearer"} {
		req, _ := http.NewRequest(http.MethodGet, ts.URL+"/api/v1/whoami", nil)
		req.Header.Set("Authorization", scheme+" "+ts.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("whoami with %q: %d %s, want 200", scheme, resp.StatusCode, trunc(string(b)))
		}
	}
	for _, h := range []string{"Basic abc", "Bearer", "Bearerx " + ts.Token} {
		req, _ := http.NewRequest(http.MethodGet, ts.URL+"/api/v1/whoami", nil)
		req.Header.Set("Authorization", h)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("whoami with Authorization %.12q: %d, want 401", h, resp.StatusCode)
		}
	}
}

// The server bounded how long headers may take, but not the body: an
// unauthenticated client that sent the headers of a join and then stalled
// its body held a connection and a goroutine for as long as it liked, and
// many of them would exhaust the server's file descriptors.
func TestStalledRequestBodyTimesOut(t *testing.T) {
	apiserver.SetBodyTimeout(t.Cleanup, time.Second)
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	addr := strings.TrimPrefix(ts.URL, "http://")
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /api/v1/join HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
	// The body timeout (1 s here) and more: the server should have given
	// up on the body by now.
	time.Sleep(3 * time.Second)
	conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	_, err = bufio.NewReader(conn).ReadByte()
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("3 s into a stalled request body (body timeout 1 s) the server still holds the connection open")
	}
	if err != nil && err != io.EOF {
		t.Logf("read: %v", err)
	}
}

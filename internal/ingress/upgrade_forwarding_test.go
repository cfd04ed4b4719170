package ingress

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// An "Upgrade: h2c" request is not a tunnel: the proxy strips the
// upgrade before the instance sees it (rewrite), so the instance can only
// answer it as a plain request. ServeHTTP counted it as an upgrade and
// lifted ClientBodyTimeout (and the send timeout) for it: a client could
// trickle a body forever and hold an instance connection, which only a
// tunnel may.
func TestH2CUpgradeKeepsTheBodyTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	app := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n, err := io.Copy(io.Discard, r.Body)
			if err != nil {
				return
			}
			fmt.Fprintf(w, "read %d upgrade=%q", n, r.Header.Get("Upgrade"))
		})
	}
	port, ins := startInstances(t, "h2cup", 1, app)
	h := startProxy(t, Config{ClientBodyTimeout: timeout}, httpService("default", "h2cup", port, ins...))
	rc := dialRaw(t, h)
	rc.c.SetDeadline(time.Now().Add(10 * timeout))
	head := "POST / HTTP/1.1\r\nHost: h2cup.default.localhost\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nContent-Length: 10\r\n\r\n"
	go io.Copy(rc.c, io.MultiReader(strings.NewReader(head), bytes.NewReader([]byte("ab"))))
	resp, body := rc.read("POST")
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("status %d, body %q; want 408 after %v: the h2c upgrade is stripped, so this is an ordinary upload", resp.StatusCode, body, timeout)
	}
}

// X-Forwarded-Proto / -For / -Host were replaced, but their underscore
// spellings passed on. CGI-style servers (Rack/puma before 6.4.3,
// CVE-2024-45614; WSGI; PHP) map '-' and '_' alike to HTTP_X_FORWARDED_*,
// so the client's X_Forwarded_Proto could stand in for the proxy's.
// nginx drops such fields by default (underscores_in_headers off).
func TestUnderscoreForwardingFieldsAreDropped(t *testing.T) {
	port, ins := startInstances(t, "usfwd", 1, nil)
	h := startProxy(t, Config{}, httpService("default", "usfwd", port, ins...))
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		var body io.Reader
		if method == http.MethodPost {
			body = strings.NewReader("x") // the ReverseProxy path
		}
		req, _ := http.NewRequest(method, h.url+"/", body)
		req.Host = "usfwd.default.localhost"
		req.Header["X_Forwarded_Proto"] = []string{"https"}
		req.Header["X_Forwarded_For"] = []string{"10.9.9.9"}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		e := decodeEcho(t, b)
		for k, v := range e.Header {
			if strings.Contains(k, "_") {
				t.Errorf("%s: the instance got the client's %s: %v", method, k, v)
			}
		}
	}
}

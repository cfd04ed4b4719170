package ingress

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// RFC 9112 6.1: an HTTP/1.0 message with Transfer-Encoding has faulty
// framing and the connection must close after it. Go's reader drops the
// field, so the front once took the request for a bodyless one, kept the
// connection, and read the body a proxy in front sent as the next request.
// Now it is refused (400) and the connection closed; one whose head is too
// big for the front goes to net/http, and its answer closes the connection.
func TestHTTP10TransferEncodingBodyIsNotReadAsARequest(t *testing.T) {
	port, ins := startInstances(t, "zzte", 1, echoHandler)
	h := startProxy(t, Config{}, httpService("default", "zzte", port, ins...))
	const host = "zzte.default.localhost"
	rc := dialRaw(t, h)
	rc.send("POST /first HTTP/1.0\r\nHost: " + host + "\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"GET /smuggled HTTP/1.1\r\nHost: " + host + "\r\n\r\n")
	rc.c.SetReadDeadline(time.Now().Add(3 * time.Second))
	all, _ := io.ReadAll(rc.br)
	if strings.Contains(string(all), `"path":"/smuggled"`) || !strings.HasPrefix(string(all), "HTTP/1.1 400 ") {
		t.Fatalf("an HTTP/1.0 request with Transfer-Encoding: %s; want 400, and its body never served", all)
	}

	// An answer with a length would let net/http keep an HTTP/1.0
	// keep-alive connection.
	sized := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(len(r.URL.Path)))
			io.WriteString(w, r.URL.Path)
		})
	}
	port2, ins2 := startInstances(t, "zzte2", 1, sized)
	h = startProxy(t, Config{}, httpService("default", "zzte2", port2, ins2...))
	const host2 = "zzte2.default.localhost"
	big := dialRaw(t, h)
	big.send("POST /first HTTP/1.0\r\nHost: " + host2 + "\r\nX-Pad: " + strings.Repeat("p", 12<<10) + "\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"GET /smuggled HTTP/1.1\r\nHost: " + host2 + "\r\n\r\n")
	big.c.SetReadDeadline(time.Now().Add(3 * time.Second))
	all, _ = io.ReadAll(big.br)
	if !strings.Contains(string(all), "/first") || strings.Contains(string(all), "/smuggled") {
		t.Fatalf("with a head too big for the front, the body was served as a request of its own:\n%s", all)
	}
}

// The docs promise 400 for a request with both Content-Length and
// Transfer-Encoding; the check once read only CRLF lines, and textproto
// (so net/http) takes bare LF ones too.
func TestFramedTwiceWithBareLF(t *testing.T) {
	port, ins := startInstances(t, "zzlf", 1, echoHandler)
	h := startProxy(t, Config{}, httpService("default", "zzlf", port, ins...))
	rc := dialRaw(t, h)
	rc.send("POST / HTTP/1.1\r\nHost: zzlf.default.localhost\r\nContent-Length: 5\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
	resp, _ := rc.read("POST")
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("status %d for a request with both Content-Length and Transfer-Encoding (a bare LF between them), want 400", resp.StatusCode)
	}
}

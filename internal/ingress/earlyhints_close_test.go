package ingress

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ServeHTTP ends the connection after the answer to an HTTP/1.0 request on
// the net/http path (its Transfer-Encoding was dropped, its body could pass
// for the next request). It once did so by setting Connection: close on
// the header map, which relaying a 103 Early Hints clears: the connection
// stayed open and the body was served as a request. The close is now put
// on the final answer's head as it is written.
func TestEarlyHintsKeepConnectionClose(t *testing.T) {
	hinted := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Link", "</a.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.Header().Del("Link")
			w.Header().Set("Content-Length", strconv.Itoa(len(r.URL.Path)))
			io.WriteString(w, r.URL.Path)
		})
	}
	port, ins := startInstances(t, "zzeh", 1, hinted)
	h := startProxy(t, Config{}, httpService("default", "zzeh", port, ins...))
	const host = "zzeh.default.localhost"
	big := dialRaw(t, h)
	big.send("GET /first HTTP/1.0\r\nHost: " + host + "\r\nX-Pad: " + strings.Repeat("p", 12<<10) + "\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"GET /smuggled HTTP/1.1\r\nHost: " + host + "\r\n\r\n")
	big.c.SetReadDeadline(time.Now().Add(3 * time.Second))
	all, _ := io.ReadAll(big.br)
	if !strings.Contains(string(all), "/first") || strings.Contains(string(all), "/smuggled") {
		t.Fatalf("after a 103, the HTTP/1.0 request's body was served as a request of its own:\n%s", all)
	}
}

// The same for a request with both Content-Length and Transfer-Encoding
// whose head is too big for the front (ReverseProxy's Got1xxResponse also
// clears the header map after a 1xx).
func TestEarlyHintsKeepConnectionCloseCLTE(t *testing.T) {
	hinted := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Link", "</a.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.Header().Del("Link")
			w.Header().Set("Content-Length", "2")
			io.WriteString(w, "ok")
		})
	}
	port, ins := startInstances(t, "zzeh2", 1, hinted)
	h := startProxy(t, Config{}, httpService("default", "zzeh2", port, ins...))
	const host = "zzeh2.default.localhost"
	big := dialRaw(t, h)
	big.send("POST /first HTTP/1.1\r\nHost: " + host + "\r\nX-Pad: " + strings.Repeat("p", 12<<10) + "\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
	resp, _ := big.read("POST")
	for resp.StatusCode < 200 {
		resp, _ = big.read("POST")
	}
	if !resp.Close {
		t.Fatalf("answer to a CL+TE request (after a 103) does not say Connection: close")
	}
}

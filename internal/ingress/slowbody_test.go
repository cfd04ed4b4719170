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

// A request body streams to the instance as it arrives, so a client that
// stops sending it would hold the instance's connection for ever; past
// ClientBodyTimeout without a byte it gets 408. Time the instance takes,
// before or after reading the body, is not the client's.
func TestStalledRequestBodiesAreCut(t *testing.T) {
	const timeout = 300 * time.Millisecond
	app := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/late-reader" {
				time.Sleep(3 * timeout)
			}
			n, err := io.Copy(io.Discard, r.Body)
			if err != nil {
				return
			}
			if r.URL.Path == "/slow-answer" {
				time.Sleep(3 * timeout)
			}
			fmt.Fprintf(w, "read %d", n)
		})
	}
	port, ins := startInstances(t, "sb", 1, app)
	h := startProxy(t, Config{ClientBodyTimeout: timeout}, httpService("default", "sb", port, ins...))

	big := strings.Repeat("x", 8<<20)
	for _, tc := range []struct {
		name, path string
		field      string // a header field besides Host and Content-Length
		length     int    // the Content-Length sent
		body       string // what is sent of it before the client waits
		status     int
		want       string
	}{
		{"a body that stops coming gets 408", "/", "", 10, "ab", http.StatusRequestTimeout, "RequestTimeout"},
		{"a body that never starts gets 408", "/", "", 10, "", http.StatusRequestTimeout, "RequestTimeout"},
		// Without "Connection: upgrade" it upgrades nothing: no tunnel.
		{"an Upgrade field alone does not lift the bound", "/", "Upgrade: anything\r\n", 10, "ab", http.StatusRequestTimeout, "RequestTimeout"},
		{"an instance slow to take a large body is waited for", "/late-reader", "", len(big), big, http.StatusOK, fmt.Sprintf("read %d", len(big))},
		{"an instance slow to answer after the body is waited for", "/slow-answer", "", 5, "hello", http.StatusOK, "read 5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := dialRaw(t, h)
			rc.c.SetDeadline(time.Now().Add(10 * timeout))
			go io.Copy(rc.c, io.MultiReader(strings.NewReader(fmt.Sprintf("POST %s HTTP/1.1\r\nHost: sb.default.localhost\r\n%sContent-Length: %d\r\n\r\n", tc.path, tc.field, tc.length)), bytes.NewReader([]byte(tc.body))))
			resp, body := rc.read("POST")
			if resp.StatusCode != tc.status || !strings.Contains(body, tc.want) {
				t.Fatalf("status %d, body %q; want %d with %q", resp.StatusCode, body, tc.status, tc.want)
			}
		})
	}
	t.Run("a gRPC client quiet between messages is waited for", func(t *testing.T) {
		rc := dialRaw(t, h)
		rc.c.SetDeadline(time.Now().Add(10 * timeout))
		rc.send("POST /svc/Watch HTTP/1.1\r\nHost: sb.default.localhost\r\nContent-Type: application/grpc+proto\r\nContent-Length: 10\r\n\r\nab")
		time.Sleep(3 * timeout)
		rc.send("cdefghij")
		if resp, body := rc.read("POST"); resp.StatusCode != http.StatusOK || body != "read 10" {
			t.Fatalf("status %d, body %q; want 200 \"read 10\"", resp.StatusCode, body)
		}
	})
}

// Over HTTP/2 the deadline is the stream's, and the connection's other
// streams carry on.
func TestStalledRequestBodiesAreCutOverHTTP2(t *testing.T) {
	const timeout = 300 * time.Millisecond
	port, ins := startInstances(t, "sb2", 1, nil)
	h := startProxy(t, Config{ClientBodyTimeout: timeout}, httpService("default", "sb2", port, ins...))
	c := h2cClient(t, 10*timeout)

	pr, pw := io.Pipe()
	defer pw.Close()
	req, _ := http.NewRequest(http.MethodPost, h.url+"/stall", pr)
	req.Host = "sb2.default.localhost"
	req.ContentLength = 10
	go pw.Write([]byte("ab"))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("stalled stream: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("stalled stream: %s %d: %s", resp.Proto, resp.StatusCode, body)
	}
	resp, body = h.get(t, c, "sb2.default.localhost", "/after")
	if resp.StatusCode != 200 || decodeEcho(t, body).Path != "/after" {
		t.Fatalf("after a stalled stream: %d: %s", resp.StatusCode, body)
	}
}

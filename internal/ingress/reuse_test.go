package ingress

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/discovery"
)

// The cases here came from a review of the fast path against what
// http.Transport and nginx guard against: answers to pipelined requests,
// pooled connections an instance closed or wrote to while idle, what is
// retried, and how long an instance's answer head may be.

// rawService starts an instance that speaks raw TCP on a loopback IP:
// handle runs once per connection.
func rawService(t *testing.T, name string, handle func(net.Conn)) *discovery.Service {
	t.Helper()
	ln, err := net.Listen("tcp", freeIP()+":0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	serveConns(ln, handle)
	addr := ln.Addr().(*net.TCPAddr)
	return &discovery.Service{Namespace: "default", Name: name,
		Ports: []v1.Port{{Name: "http", Port: addr.Port, Protocol: v1.ProtocolHTTP}},
		Ready: []discovery.Endpoint{{Instance: name + "-0", IP: addr.IP.String()}}}
}

// Answers to pipelined requests must reach the client whatever ends the
// batch: a request handed to net/http, an aborted answer, or the client
// closing its side.
func TestPipelinedAnswersAreNotLost(t *testing.T) {
	app := func(name string) http.Handler {
		echo := echoHandler(name)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/cut" {
				// Promise 100 bytes, send 10, hang up: the proxy must
				// abort its answer.
				w.Header().Set("Content-Length", "100")
				w.Write([]byte("only ten.."))
				w.(http.Flusher).Flush()
				if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
					c.Close()
				}
				return
			}
			echo.ServeHTTP(w, r)
		})
	}
	port, ins := startInstances(t, "pl", 1, app)
	h := startProxy(t, Config{}, httpService("default", "pl", port, ins...))
	get := func(path string) string {
		return "GET " + path + " HTTP/1.1\r\nHost: pl.default.localhost\r\n\r\n"
	}
	for _, tc := range []struct {
		name  string
		batch string
		close bool     // half-close the client side after the batch
		want  []string // paths answered, in order
	}{
		{"handed to net/http", get("/first") +
			"POST /second HTTP/1.1\r\nHost: pl.default.localhost\r\nContent-Length: 5\r\n\r\nhello", false, []string{"/first", "/second"}},
		{"aborted answer after it", get("/first") + get("/cut"), false, []string{"/first"}},
		{"client half-closes", get("/a") + get("/b"), true, []string{"/a", "/b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := dialRaw(t, h)
			rc.send(tc.batch)
			if tc.close {
				rc.c.(*net.TCPConn).CloseWrite()
			}
			for _, path := range tc.want {
				resp, err := http.ReadResponse(rc.br, &http.Request{Method: http.MethodGet})
				if err != nil {
					t.Fatalf("the answer for %s never came: %v", path, err)
				}
				b, err := io.ReadAll(resp.Body)
				if err != nil {
					t.Fatalf("answer for %s: %v", path, err)
				}
				if got := decodeEcho(t, b).Path; got != path {
					t.Fatalf("the answer in %s's place is for %s", path, got)
				}
			}
		})
	}
}

// A pooled connection is checked before every reuse, not only after a
// second idle: one the instance closed (a short idle timeout, a restart)
// would fail a request that is not retried, such as a POST.
func TestPooledConnectionClosedByTheInstanceIsNotUsed(t *testing.T) {
	svc := rawService(t, "pc", func(c net.Conn) {
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		time.Sleep(20 * time.Millisecond) // then an idle timeout closes it
	})
	h := startProxy(t, Config{}, svc)
	rc := dialRaw(t, h)
	rc.send("GET /warm HTTP/1.1\r\nHost: pc.default.localhost\r\n\r\n")
	if resp, _ := rc.read("GET"); resp.StatusCode != 200 {
		t.Fatalf("warm-up: %d", resp.StatusCode)
	}
	time.Sleep(200 * time.Millisecond)
	rc.send("POST /act HTTP/1.1\r\nHost: pc.default.localhost\r\n\r\n")
	if resp, body := rc.read("POST"); resp.StatusCode != 200 {
		t.Fatalf("POST sent on a connection the instance had closed: %d %s", resp.StatusCode, body)
	}
}

// Bytes an instance sends after the end of an answer (here a body longer
// than its Content-Length, in a second write) must not become the answer
// to the next request on that connection, another client's perhaps.
func TestBytesAfterAnAnswerAreNotTheNextAnswer(t *testing.T) {
	svc := rawService(t, "ub", func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if req.URL.Path == "/sloppy" {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
				time.Sleep(20 * time.Millisecond)
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 14\r\n\r\nfor alice only")
				continue
			}
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(req.URL.Path), req.URL.Path)
		}
	})
	h := startProxy(t, Config{}, svc)
	alice := dialRaw(t, h)
	alice.send("GET /sloppy HTTP/1.1\r\nHost: ub.default.localhost\r\n\r\n")
	if _, body := alice.read("GET"); body != "hello" {
		t.Fatalf("alice: %q", body)
	}
	time.Sleep(100 * time.Millisecond)
	bob := dialRaw(t, h)
	bob.send("GET /bob HTTP/1.1\r\nHost: ub.default.localhost\r\n\r\n")
	if _, body := bob.read("GET"); body != "/bob" {
		t.Fatalf("bob asked for /bob and got %q", body)
	}
}

// Only a connection the instance closed before answering is a reason to
// send a request again: one that timed out may still be running there.
func TestATimedOutRequestIsNotSentAgain(t *testing.T) {
	hits := make(chan string, 8)
	app := func(string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits <- r.Method + " " + r.URL.Path
			if r.URL.Path == "/slow" {
				time.Sleep(400 * time.Millisecond)
			}
			w.Write([]byte("done"))
		})
	}
	port, ins := startInstances(t, "to", 1, app)
	h := startProxy(t, Config{ResponseHeaderTimeout: 150 * time.Millisecond}, httpService("default", "to", port, ins...))
	rc := dialRaw(t, h)
	rc.send("GET /warm HTTP/1.1\r\nHost: to.default.localhost\r\n\r\n")
	rc.read("GET")
	<-hits
	rc.send("DELETE /slow HTTP/1.1\r\nHost: to.default.localhost\r\n\r\n")
	resp, _ := rc.read("DELETE")
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Errorf("a request past ResponseHeaderTimeout: status %d, want 504", resp.StatusCode)
	}
	time.Sleep(400 * time.Millisecond)
	if n := len(hits); n != 1 {
		t.Fatalf("the instance received DELETE /slow %d times", n)
	}
}

// An instance's answer head is read up to maxResponseHeadBytes and after
// at most maxInterimResponses 1xx answers; past either it is a 502, and
// the connection is not reused.
func TestAnswerHeadsAreBounded(t *testing.T) {
	for _, tc := range []struct {
		name   string
		head   string // what the instance writes before "Content-Length: 2\r\n\r\nok"
		status int
	}{
		{"a field of 64 KiB", "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("a", 64<<10) + "\r\n", 200},
		{"a field over the limit", "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("a", maxResponseHeadBytes) + "\r\n", 502},
		{"five interim answers", strings.Repeat("HTTP/1.1 102 Processing\r\n\r\n", maxInterimResponses) + "HTTP/1.1 200 OK\r\n", 200},
		{"six interim answers", strings.Repeat("HTTP/1.1 102 Processing\r\n\r\n", maxInterimResponses+1) + "HTTP/1.1 200 OK\r\n", 502},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc := rawService(t, "hb", func(c net.Conn) {
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					return
				}
				bw := bufio.NewWriterSize(c, 64<<10)
				bw.WriteString(tc.head)
				bw.WriteString("Content-Length: 2\r\n\r\nok")
				bw.Flush()
				io.Copy(io.Discard, c)
			})
			h := startProxy(t, Config{}, svc)
			rc := dialRaw(t, h)
			rc.send("GET / HTTP/1.1\r\nHost: hb.default.localhost\r\n\r\n")
			resp, body := rc.read("GET")
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d (%.200s)", resp.StatusCode, tc.status, body)
			}
			if tc.status == 200 && body != "ok" {
				t.Fatalf("body %q", body)
			}
		})
	}
}

package ingress

import (
	"bufio"
	"errors"
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

// rawConn talks HTTP/1.x to the proxy byte by byte.
type rawConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, h *harness) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(h.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawConn{t: t, c: c, br: bufio.NewReader(c)}
}

func (r *rawConn) send(s string) {
	r.t.Helper()
	if _, err := io.WriteString(r.c, s); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rawConn) read(method string) (*http.Response, string) {
	r.t.Helper()
	resp, err := http.ReadResponse(r.br, &http.Request{Method: method})
	if err != nil {
		r.t.Fatalf("read response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		r.t.Fatalf("read body: %v", err)
	}
	return resp, string(b)
}

// closed reports whether the proxy closed the connection.
func (r *rawConn) closed() bool {
	r.c.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err := r.br.ReadByte()
	return err == io.EOF
}

func TestFrontHTTP1(t *testing.T) {
	app := func(name string) http.Handler {
		echo := echoHandler(name)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/stream":
				w.Header().Set("Content-Type", "text/event-stream")
				fmt.Fprintf(w, "data: one\n\n")
				w.(http.Flusher).Flush()
				<-r.Context().Done()
			case "/chunked":
				w.Header().Set("Trailer", "X-Sum")
				w.Write([]byte("part1,"))
				w.(http.Flusher).Flush()
				w.Write([]byte("part2"))
				w.Header().Set("X-Sum", "42")
			case "/nolength":
				// HTTP/1.0 answers without a length end at close.
				w.Write([]byte("no length"))
				w.(http.Flusher).Flush()
			default:
				echo.ServeHTTP(w, r)
			}
		})
	}
	port, ins := startInstances(t, "f", 1, app)
	h := startProxy(t, Config{}, httpService("default", "f", port, ins...))
	const host = "f.default.localhost"

	t.Run("pipelined requests are answered in order on one connection", func(t *testing.T) {
		rc := dialRaw(t, h)
		rc.send("GET /a HTTP/1.1\r\nHost: " + host + "\r\n\r\nGET /b HTTP/1.1\r\nHost: " + host + "\r\n\r\nHEAD /c HTTP/1.1\r\nHost: " + host + "\r\n\r\n")
		for _, want := range []string{"/a", "/b"} {
			resp, body := rc.read("GET")
			if resp.StatusCode != 200 || decodeEcho(t, []byte(body)).Path != want {
				t.Fatalf("got %d %s, want %s", resp.StatusCode, body, want)
			}
		}
		resp, body := rc.read("HEAD")
		if resp.StatusCode != 200 || body != "" || resp.ContentLength <= 0 {
			t.Fatalf("HEAD: %d, %q, length %d", resp.StatusCode, body, resp.ContentLength)
		}
	})
	t.Run("HTTP/1.0 closes unless asked to keep alive", func(t *testing.T) {
		rc := dialRaw(t, h)
		rc.send("GET /x HTTP/1.0\r\nHost: " + host + "\r\nConnection: keep-alive\r\n\r\n")
		resp, _ := rc.read("GET")
		if resp.StatusCode != 200 || resp.Header.Get("Connection") != "keep-alive" {
			t.Fatalf("keep-alive: %d %v", resp.StatusCode, resp.Header)
		}
		rc.send("GET /nolength HTTP/1.0\r\nHost: " + host + "\r\n\r\n")
		resp, body := rc.read("GET")
		if resp.StatusCode != 200 || body != "no length" {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
		if !rc.closed() {
			t.Fatal("connection still open after an HTTP/1.0 request without keep-alive")
		}
	})
	t.Run("Connection close from the client is honoured", func(t *testing.T) {
		rc := dialRaw(t, h)
		rc.send("GET /x HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n")
		if resp, _ := rc.read("GET"); !resp.Close {
			t.Fatal("response does not say Connection: close")
		}
		if !rc.closed() {
			t.Fatal("connection still open")
		}
	})
	t.Run("chunked responses and their trailers pass through", func(t *testing.T) {
		rc := dialRaw(t, h)
		rc.send("GET /chunked HTTP/1.1\r\nHost: " + host + "\r\n\r\n")
		resp, body := rc.read("GET")
		if body != "part1,part2" || resp.Trailer.Get("X-Sum") != "42" {
			t.Fatalf("body %q trailer %v", body, resp.Trailer)
		}
	})
	t.Run("an event stream is flushed as it comes", func(t *testing.T) {
		rc := dialRaw(t, h)
		rc.send("GET /stream HTTP/1.1\r\nHost: " + host + "\r\n\r\n")
		resp, err := http.ReadResponse(rc.br, nil)
		if err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(resp.Body).ReadString('\n')
		if err != nil || line != "data: one\n" {
			t.Fatalf("first event: %q, %v", line, err)
		}
	})
	t.Run("a request with a body moves the connection to net/http", func(t *testing.T) {
		rc := dialRaw(t, h)
		rc.send("GET /first HTTP/1.1\r\nHost: " + host + "\r\n\r\n")
		rc.read("GET")
		rc.send("POST /second HTTP/1.1\r\nHost: " + host + "\r\nContent-Length: 5\r\n\r\nhelloGET /third HTTP/1.1\r\nHost: " + host + "\r\n\r\n")
		_, body := rc.read("POST")
		if e := decodeEcho(t, []byte(body)); e.Path != "/second" || e.Body != "hello" {
			t.Fatalf("POST reached the app as %+v", e)
		}
		_, body = rc.read("GET")
		if e := decodeEcho(t, []byte(body)); e.Path != "/third" {
			t.Fatalf("third request reached the app as %+v", e)
		}
	})
	t.Run("a head larger than the front's buffer is served by net/http", func(t *testing.T) {
		rc := dialRaw(t, h)
		big := strings.Repeat("x", 3*frontBufSize)
		rc.send("GET /big HTTP/1.1\r\nHost: " + host + "\r\nCookie: " + big + "\r\n\r\n")
		resp, body := rc.read("GET")
		if resp.StatusCode != 200 || http.Header(decodeEcho(t, []byte(body)).Header).Get("Cookie") != big {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
	for _, tc := range []struct{ name, req string }{
		{"two Host headers are rejected", "GET / HTTP/1.1\r\nHost: " + host + "\r\nHost: evil.example.com\r\n\r\n"},
		{"a missing Host header is rejected", "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n"},
		{"a malformed header is rejected", "GET / HTTP/1.1\r\nHost: " + host + "\r\nBad Name: x\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := dialRaw(t, h)
			rc.send(tc.req)
			if resp, _ := rc.read("GET"); resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("status %d, want 400", resp.StatusCode)
			}
		})
	}
	t.Run("bare LF line endings are understood", func(t *testing.T) {
		rc := dialRaw(t, h)
		rc.send("GET /lf HTTP/1.1\nHost: " + host + "\n\n")
		if resp, body := rc.read("GET"); resp.StatusCode != 200 || decodeEcho(t, []byte(body)).Path != "/lf" {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	})
}

func TestInstanceClosingIdleConnectionsCausesNoErrors(t *testing.T) {
	// The instances drop every kept-alive connection between requests.
	port, ins := startInstancesWith(t, "idle", 2, nil, func(s *http.Server) { s.IdleTimeout = 10 * time.Millisecond })
	h := startProxy(t, Config{}, httpService("default", "idle", port, ins...))
	client := &http.Client{Transport: &http.Transport{}}
	for i := 0; i < 40; i++ {
		method := []string{http.MethodGet, http.MethodDelete, http.MethodPost}[i%3]
		var body io.Reader
		if method == http.MethodPost {
			body = strings.NewReader("payload")
		}
		req, _ := http.NewRequest(method, h.url+"/", body)
		req.Host = "idle.default.localhost"
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s %d: status %d: %s", method, i, resp.StatusCode, b)
		}
		time.Sleep(15 * time.Millisecond)
	}
}

func TestClientDisconnectReleasesTheInstance(t *testing.T) {
	cancelled := make(chan string, 4)
	hang := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/stream" {
				// Headers out, then silence: the proxy is in the body copy.
				w.WriteHeader(200)
				w.(http.Flusher).Flush()
			}
			<-r.Context().Done()
			cancelled <- r.URL.Path
		})
	}
	port, ins := startInstances(t, "hang", 1, hang)
	h := startProxy(t, Config{}, httpService("default", "hang", port, ins...))
	for _, path := range []string{"/wait", "/stream"} {
		t.Run("a client gone during "+path+" cancels the instance's request", func(t *testing.T) {
			rc := dialRaw(t, h)
			rc.send("GET " + path + " HTTP/1.1\r\nHost: hang.default.localhost\r\n\r\n")
			time.Sleep(300 * time.Millisecond)
			rc.c.Close()
			select {
			case got := <-cancelled:
				if got != path {
					t.Fatalf("cancelled %s, want %s", got, path)
				}
			case <-time.After(3 * time.Second):
				t.Fatal("the instance still holds the request after the client left")
			}
		})
	}
}

func TestFrontWaitsForTheClientCorrectly(t *testing.T) {
	slow := func(name string) http.Handler {
		echo := echoHandler(name)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if d, err := time.ParseDuration(r.URL.Query().Get("sleep")); err == nil {
				time.Sleep(d)
			}
			echo.ServeHTTP(w, r)
		})
	}
	port, ins := startInstances(t, "w", 1, slow)
	h := startProxy(t, Config{ClientIdleTimeout: 300 * time.Millisecond}, httpService("default", "w", port, ins...))
	const host = "w.default.localhost"

	// A request sent while the one before it is still with the instance
	// arrives while nobody reads the connection; it must not be missed.
	for _, sleep := range []string{"20ms", "250ms"} {
		t.Run("a request sent during a "+sleep+" one is served", func(t *testing.T) {
			rc := dialRaw(t, h)
			rc.send("GET /first?sleep=" + sleep + " HTTP/1.1\r\nHost: " + host + "\r\n\r\n")
			time.Sleep(5 * time.Millisecond)
			rc.send("GET /second HTTP/1.1\r\nHost: " + host + "\r\n\r\n")
			for _, want := range []string{"/first", "/second"} {
				resp, body := rc.read("GET")
				if resp.StatusCode != 200 || decodeEcho(t, []byte(body)).Path != want {
					t.Fatalf("got %d %s, want %s", resp.StatusCode, body, want)
				}
			}
		})
	}
	t.Run("a head that arrives in pieces is served", func(t *testing.T) {
		rc := dialRaw(t, h)
		for i := 0; i < 3; i++ {
			for _, piece := range []string{"GET /pie", "ces HTTP/1.1\r\nHo", "st: " + host + "\r\n", "\r\n"} {
				rc.send(piece)
				time.Sleep(10 * time.Millisecond)
			}
			if resp, body := rc.read("GET"); resp.StatusCode != 200 || decodeEcho(t, []byte(body)).Path != "/pieces" {
				t.Fatalf("got %d %s", resp.StatusCode, body)
			}
		}
	})
	t.Run("an idle connection closes after ClientIdleTimeout and not before", func(t *testing.T) {
		rc := dialRaw(t, h)
		for i := 0; i < 3; i++ {
			rc.send("GET /x HTTP/1.1\r\nHost: " + host + "\r\n\r\n")
			rc.read("GET")
			time.Sleep(150 * time.Millisecond) // half the idle timeout
		}
		start := time.Now()
		if !rc.closed() {
			t.Fatal("connection still open after twice the idle timeout")
		}
		// 150ms of the timeout had passed; it may run up to 1/16 over.
		if waited := time.Since(start); waited < 100*time.Millisecond {
			t.Fatalf("closed %v after the last 150ms of idleness, before the 300ms timeout", waited)
		}
	})
}

func TestHalfClosedConnectionsEndPromptly(t *testing.T) {
	t.Run("a client that half-closes after its request gets the answer and the connection closes", func(t *testing.T) {
		port, ins := startInstances(t, "hc", 1, nil)
		h := startProxy(t, Config{}, httpService("default", "hc", port, ins...))
		for i := 0; i < 5; i++ {
			rc := dialRaw(t, h)
			rc.send("GET /x HTTP/1.1\r\nHost: hc.default.localhost\r\n\r\n")
			rc.c.(*net.TCPConn).CloseWrite()
			if resp, _ := rc.read("GET"); resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			// The default idle timeout is minutes; the end of the stream
			// must be seen now.
			if !rc.closed() {
				t.Fatal("connection still open 2s after the client half-closed it")
			}
		}
	})
	// A raw instance: answers one request per connection with keep-alive
	// framing, then after closeAfter shuts its side down and reads (and
	// drops) whatever comes for a while, as a lingering close does. The
	// request that follows gap later must be retried on a new connection,
	// however soon after the half-close it comes.
	for _, tc := range []struct{ closeAfter, gap time.Duration }{
		{30 * time.Millisecond, 60 * time.Millisecond},
		{2 * time.Millisecond, 6 * time.Millisecond},
	} {
		t.Run(fmt.Sprintf("an instance that half-closes connections %v after answering and keeps reading is not waited on", tc.closeAfter), func(t *testing.T) {
			ln, err := net.Listen("tcp", freeIP()+":0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			serveConns(ln, func(c net.Conn) {
				br := bufio.NewReader(c)
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				time.Sleep(tc.closeAfter)
				c.(*net.TCPConn).CloseWrite()
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				io.Copy(io.Discard, br)
			})
			addr := ln.Addr().(*net.TCPAddr)
			svc := &discovery.Service{Namespace: "default", Name: "linger",
				Ports: []v1.Port{{Name: "http", Port: addr.Port, Protocol: v1.ProtocolHTTP}},
				Ready: []discovery.Endpoint{{Instance: "linger-0", IP: addr.IP.String()}}}
			h := startProxy(t, Config{}, svc)
			client := &http.Client{Timeout: 3 * time.Second}
			for i := 0; i < 4; i++ {
				resp, body := h.get(t, client, "linger.default.localhost", "/")
				if resp.StatusCode != 200 || string(body) != "ok" {
					t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
				}
				time.Sleep(tc.gap)
			}
		})
	}
}

// net/http half-closes a connection before closing it after an error
// answer only if the connection can: the replayed one handed to it must.
func TestReplayConnHalfCloses(t *testing.T) {
	client, srv := tcpPair(t)
	rc := &replayConn{Conn: srv, pending: []byte("GET / HTTP/1.1\r\n")}
	var cw interface{ CloseWrite() error } = rc // net/http's test
	if err := cw.CloseWrite(); err != nil {
		t.Fatalf("CloseWrite: %v", err)
	}
	client.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, err := client.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("client read %d, %v after the half close; want EOF", n, err)
	}
	// The other direction still works: the client's bytes arrive after
	// the replayed ones.
	if _, err := client.Write([]byte("more")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 0, 32)
	buf := make([]byte, 32)
	rc.SetReadDeadline(time.Now().Add(2 * time.Second))
	for len(got) < len("GET / HTTP/1.1\r\nmore") {
		n, err := rc.Read(buf)
		if err != nil {
			t.Fatalf("read after %q: %v", got, err)
		}
		got = append(got, buf[:n]...)
	}
	if string(got) != "GET / HTTP/1.1\r\nmore" {
		t.Fatalf("read %q", got)
	}
	if err := (&replayConn{Conn: struct{ net.Conn }{srv}}).CloseWrite(); !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("CloseWrite on a connection without one: %v, want ErrUnsupported", err)
	}
}

// A request with both Content-Length and Transfer-Encoding is refused
// and its connection closed (RFC 9112 6.1): a proxy in front could have
// read it by its length, and the rest as another request.
func TestRequestsFramedTwiceAreRefused(t *testing.T) {
	port, ins := startInstances(t, "ft", 1, nil)
	h := startProxy(t, Config{}, httpService("default", "ft", port, ins...))
	for _, head := range []string{
		"POST / HTTP/1.1\r\nHost: ft.default.localhost\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: ft.default.localhost\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n",
	} {
		rc := dialRaw(t, h)
		rc.send(head + "0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: ft.default.localhost\r\n\r\n")
		resp, body := rc.read("POST")
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "both Content-Length and Transfer-Encoding") {
			t.Fatalf("%q: %d %s; want 400 saying why", head, resp.StatusCode, body)
		}
		if !rc.closed() {
			t.Fatalf("%q: the connection stayed open after the refusal", head)
		}
	}
	// A head too large for the front goes to net/http, which drops the
	// Content-Length: the connection still ends after the answer.
	rc := dialRaw(t, h)
	big := "X-Pad: " + strings.Repeat("p", 9000) + "\r\n"
	rc.send("POST / HTTP/1.1\r\nHost: ft.default.localhost\r\n" + big + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: ft.default.localhost\r\n\r\n")
	if resp, body := rc.read("POST"); resp.StatusCode == http.StatusOK && strings.Contains(body, "smuggled") {
		t.Fatalf("the request after a large head framed twice was served: %s", body)
	}
	if !rc.closed() {
		t.Fatal("a large head framed twice left the connection open")
	}
	// Either alone is served.
	rc = dialRaw(t, h)
	rc.send("POST / HTTP/1.1\r\nHost: ft.default.localhost\r\nContent-Length: 0\r\n\r\n")
	if resp, _ := rc.read("POST"); resp.StatusCode != http.StatusOK {
		t.Fatalf("a request with a length: %d", resp.StatusCode)
	}
	rc = dialRaw(t, h)
	rc.send("POST / HTTP/1.1\r\nHost: ft.default.localhost\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
	if resp, _ := rc.read("POST"); resp.StatusCode != http.StatusOK {
		t.Fatalf("a chunked request: %d", resp.StatusCode)
	}
}

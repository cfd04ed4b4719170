package ingress

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/discovery"
)

// instance is a real HTTP server standing in for one App instance. Every
// instance of a test App listens on the same port on its own loopback IP
// (127.0.0.N), as instances do on a node bridge.
type instance struct {
	name  string
	ip    string
	srv   *http.Server
	hits  atomic.Int64
	conns atomic.Int64 // open server-side connections
}

func (in *instance) endpoint() discovery.Endpoint {
	return discovery.Endpoint{Instance: in.name, IP: in.ip}
}

// echo is what the default instance handler answers.
type echo struct {
	Instance string              `json:"instance"`
	Method   string              `json:"method"`
	Host     string              `json:"host"`
	Path     string              `json:"path"`
	Body     string              `json:"body"`
	Header   map[string][]string `json:"header"`
}

func echoHandler(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Instance", name)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(echo{Instance: name, Method: r.Method, Host: r.Host, Path: r.URL.Path, Body: string(body), Header: r.Header})
	})
}

var nextIP atomic.Int32

// freeIP hands out loopback addresses so that parallel tests in this
// package do not share instance IPs.
func freeIP() string { return "127.0.0." + strconv.Itoa(int(10+nextIP.Add(1)%240)) }

// startInstances starts n instances named prefix-0..n-1 on a shared port.
// handler may be nil for echoHandler.
func startInstances(t testing.TB, prefix string, n int, handler func(name string) http.Handler) (int, []*instance) {
	t.Helper()
	return startInstancesWith(t, prefix, n, handler, nil)
}

// startInstancesWith is startInstances with a hook to configure each
// server before it serves.
func startInstancesWith(t testing.TB, prefix string, n int, handler func(name string) http.Handler, configure func(*http.Server)) (int, []*instance) {
	t.Helper()
	for try := 0; try < 20; try++ {
		probe, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := probe.Addr().(*net.TCPAddr).Port
		probe.Close()
		out, err := listenInstances(prefix, n, port, handler, configure)
		if err != nil {
			continue
		}
		t.Cleanup(func() {
			for _, in := range out {
				in.srv.Close()
			}
		})
		return port, out
	}
	t.Fatal("could not find a port free on several loopback addresses")
	return 0, nil
}

func listenInstances(prefix string, n, port int, handler func(name string) http.Handler, configure func(*http.Server)) ([]*instance, error) {
	var out []*instance
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("%s-%d", prefix, i)
		ip := freeIP()
		ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
		if err != nil {
			for _, in := range out {
				in.srv.Close()
			}
			return nil, err
		}
		h := echoHandler(name)
		if handler != nil {
			h = handler(name)
		}
		in := &instance{name: name, ip: ip}
		in.srv = &http.Server{
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				in.hits.Add(1)
				h.ServeHTTP(w, r)
			}),
			ConnState: func(_ net.Conn, s http.ConnState) {
				switch s {
				case http.StateNew:
					in.conns.Add(1)
				case http.StateClosed, http.StateHijacked:
					in.conns.Add(-1)
				}
			},
		}
		if configure != nil {
			configure(in.srv)
		}
		go in.srv.Serve(ln)
		out = append(out, in)
	}
	return out, nil
}

// serveConns accepts on ln until it is closed and hands each connection
// to handle in a goroutine of its own, closing it when handle returns.
func serveConns(ln net.Listener, handle func(net.Conn)) {
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
}

func httpService(ns, name string, port int, instances ...*instance) *discovery.Service {
	s := &discovery.Service{
		Namespace: ns, Name: name,
		Ports: []v1.Port{{Name: "http", Port: port, Protocol: v1.ProtocolHTTP}},
	}
	for _, in := range instances {
		s.Ready = append(s.Ready, in.endpoint())
		s.All = append(s.All, in.endpoint())
	}
	return s
}

var revision atomic.Int64

func snapshot(services ...*discovery.Service) *discovery.Snapshot {
	s := &discovery.Snapshot{Revision: revision.Add(1), Time: time.Now(), Services: map[string]*discovery.Service{}}
	for _, svc := range services {
		s.Services[svc.Key()] = svc
	}
	return s
}

// harness is a Proxy serving on a loopback port and following a
// Broadcaster.
type harness struct {
	p   *Proxy
	src *discovery.Broadcaster
	url string
	ln  net.Listener

	cancel   context.CancelFunc
	served   chan struct{} // closed when Serve returned, with serveErr
	serveErr error
}

// stop ends the proxy's context; the channel is closed once Serve
// returned (h.serveErr then holds its result).
func (h *harness) stop() <-chan struct{} {
	h.cancel()
	return h.served
}

// tunnelApp is an app that answers with a WebSocket-style 101 (only to
// requests asking for an upgrade, unless anyRequest) and then echoes
// each line upper-cased until the connection ends. The 101 names the
// instance in X-Instance.
func tunnelApp(anyRequest bool) func(name string) http.Handler {
	return func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !anyRequest && !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
				http.Error(w, "want upgrade", http.StatusBadRequest)
				return
			}
			io.Copy(io.Discard, r.Body)
			c, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer c.Close()
			fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Instance: %s\r\n\r\n", name)
			brw.Flush()
			for {
				line, err := brw.ReadString('\n')
				if err != nil {
					return
				}
				brw.WriteString(strings.ToUpper(line))
				brw.Flush()
			}
		})
	}
}

func startProxy(t *testing.T, cfg Config, services ...*discovery.Service) *harness {
	t.Helper()
	return startProxyTLS(t, cfg, nil, services...)
}

func newSource(services ...*discovery.Service) *discovery.Broadcaster {
	src := discovery.NewBroadcaster()
	src.Publish(snapshot(services...))
	return src
}

func startProxyTLS(t *testing.T, cfg Config, tlsLn net.Listener, services ...*discovery.Service) *harness {
	t.Helper()
	src := newSource(services...)
	if cfg.TCPBindAddress == "" {
		cfg.TCPBindAddress = "127.0.0.1"
	}
	p, err := New(cfg, src, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{p: p, src: src, url: "http://" + ln.Addr().String(), ln: ln, cancel: cancel, served: make(chan struct{})}
	go func() {
		h.serveErr = p.Serve(ctx, ln, tlsLn)
		close(h.served)
	}()
	t.Cleanup(func() {
		<-h.stop()
		if h.serveErr != nil {
			t.Errorf("Serve: %v", h.serveErr)
		}
	})
	h.waitRunning(t)
	// New applied the snapshot before Run opened the node-port layer:
	// apply it again under Run, so that what a test reads of the node
	// ports is there when startProxy returns.
	h.publish(t, services...)
	return h
}

func (h *harness) waitRunning(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !h.p.tcpReady() {
		if time.Now().After(deadline) {
			t.Fatal("Run did not start")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (p *Proxy) tcpReady() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.tcp != nil
}

// publish makes services the snapshot and waits until the proxy serves it.
func (h *harness) publish(t *testing.T, services ...*discovery.Service) {
	t.Helper()
	s := snapshot(services...)
	h.src.Publish(s)
	deadline := time.Now().Add(5 * time.Second)
	for h.p.Revision() < s.Revision {
		if time.Now().After(deadline) {
			t.Fatalf("proxy did not apply revision %d (at %d)", s.Revision, h.p.Revision())
		}
		time.Sleep(time.Millisecond)
	}
}

// get sends a request with the given Host through the proxy.
func (h *harness) get(t *testing.T, c *http.Client, host, path string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, h.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s%s: %v", host, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func decodeEcho(t *testing.T, b []byte) echo {
	t.Helper()
	var e echo
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("response is not an echo: %v: %s", err, b)
	}
	return e
}

// testLogger sends the proxy's logs to the test log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct{ t *testing.T }

var logMu sync.Mutex

func (w testWriter) Write(b []byte) (int, error) {
	logMu.Lock()
	defer logMu.Unlock()
	defer func() { recover() }() // a late log after the test ended
	w.t.Log(string(b))
	return len(b), nil
}

// deadIP is a loopback IP where nothing listens on port.
func deadIP(t *testing.T, port int) string {
	t.Helper()
	for i := 0; i < 20; i++ {
		ip := freeIP()
		c, err := net.DialTimeout("tcp", net.JoinHostPort(ip, strconv.Itoa(port)), time.Second)
		if err != nil {
			var oe *net.OpError
			if errors.As(err, &oe) {
				return ip
			}
		}
		if c != nil {
			c.Close()
		}
	}
	t.Fatal("no dead loopback address found")
	return ""
}

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b := <-accepted
	if b == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a.(*net.TCPConn), b.(*net.TCPConn)
}

// h2cClient speaks HTTP/2 without TLS (prior knowledge), as gRPC and
// h2c clients do; timeout 0 means none. Its connections close when the
// test ends.
func h2cClient(t testing.TB, timeout time.Duration) *http.Client {
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: timeout}
}

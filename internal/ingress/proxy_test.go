package ingress

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/discovery"
)

func TestDefaultHostReachesApp(t *testing.T) {
	port, ins := startInstances(t, "hello", 1, nil)
	h := startProxy(t, Config{}, httpService("default", "hello", port, ins...))
	resp, body := h.get(t, nil, "hello.default.localhost", "/greet")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d: %s", resp.StatusCode, body)
	}
	if e := decodeEcho(t, body); e.Instance != "hello-0" || e.Path != "/greet" {
		t.Fatalf("echo = %+v", e)
	}
	// The same through a Host header with a port and in capitals.
	resp, body = h.get(t, nil, "HELLO.default.localhost:8080", "/")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d: %s", resp.StatusCode, body)
	}
}

func TestErrorResponses(t *testing.T) {
	port, ins := startInstances(t, "ok", 1, nil)
	dead := deadIP(t, port)
	empty := httpService("default", "empty", port)
	broken := httpService("default", "broken", port)
	broken.Ready = []discovery.Endpoint{{Instance: "broken-0", IP: dead}}
	db := httpService("default", "db", port, ins...)
	db.Ports = []v1.Port{{Name: "pg", Port: 5432, Protocol: v1.ProtocolTCP, Expose: "tcp"}}
	h := startProxy(t, Config{TCPBindAddress: "127.0.0.1"}, httpService("default", "ok", port, ins...), empty, broken, db)

	for _, tc := range []struct {
		name, host string
		status     int
		code       string
		mentions   []string
	}{
		{"an unknown host gets 404 naming the host", "nobody.example.com", 404, "NotFound", []string{`no app routes host \"nobody.example.com\"`}},
		{"a Host with a bad port gets 400", "ok.default.localhost:99999", 400, "BadRequest", []string{"not a number from 0 to 65535"}},
		{"an app with no http port gets 404 saying so", "db.default.localhost", 404, "NotFound", []string{"has no http port", "protocol http"}},
		{"an app with no ready instance gets 503 naming the app", "empty.default.localhost", 503, "Unavailable", []string{"default/empty has no ready instance"}},
		{"an instance that refuses connections gets 502 naming it", "broken.default.localhost", 502, "BadGateway", []string{"default/broken", "broken-0", "connect failed"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := h.get(t, nil, tc.host, "/x")
			if resp.StatusCode != tc.status {
				t.Fatalf("status = %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Fatalf("content type = %q", ct)
			}
			var eb errorBody
			if err := json.Unmarshal(body, &eb); err != nil {
				t.Fatalf("body is not JSON: %s", body)
			}
			if eb.Reason != tc.code || eb.Code != tc.status {
				t.Fatalf("code %d, reason %q; want %d, %q", eb.Code, eb.Reason, tc.status, tc.code)
			}
			for _, m := range tc.mentions {
				if !strings.Contains(string(body), m) {
					t.Errorf("body %s does not mention %q", body, m)
				}
			}
		})
	}
}

// The fields apps behind a proxy trust it for are the proxy's, whatever
// the client sent: X-Real-IP, X-Forwarded-Port and X-Forwarded-Prefix
// passed through as the client set them, so a client could pose as
// another address or change the links an app builds (review helper-164).
func TestForwardedHeaders(t *testing.T) {
	port, ins := startInstances(t, "fw", 1, nil)
	h := startProxy(t, Config{}, httpService("default", "fw", port, ins...))
	u, _ := url.Parse(h.url)
	for _, path := range []struct {
		name string
		pad  int // a head over 8 KiB is read by net/http, not the front
	}{{"front", 0}, {"net/http", 9000}} {
		t.Run(path.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, h.url+"/p?q=1", nil)
			req.Host = "fw.default.localhost"
			req.Header.Set("X-Forwarded-For", "203.0.113.7")
			req.Header.Set("X-Forwarded-Host", "spoofed.example.com")
			req.Header.Set("X-Real-IP", "6.6.6.6")
			req.Header.Set("X-Forwarded-Port", "1234")
			req.Header.Set("X-Forwarded-Prefix", "/evil")
			req.Header.Set("X_Real_IP", "6.6.6.7")
			req.Header.Set("Connection", "keep-alive, X-Hop")
			req.Header.Set("X-Hop", "must not pass")
			if path.pad > 0 {
				req.Header.Set("X-Pad", strings.Repeat("p", path.pad))
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			e := decodeEcho(t, b)
			hd := http.Header(e.Header)
			for _, c := range []struct{ name, got, want string }{
				{"Host", e.Host, "fw.default.localhost"},
				{"X-Forwarded-For", hd.Get("X-Forwarded-For"), "203.0.113.7, 127.0.0.1"},
				{"X-Forwarded-Host", hd.Get("X-Forwarded-Host"), "fw.default.localhost"},
				{"X-Forwarded-Proto", hd.Get("X-Forwarded-Proto"), "http"},
				{"X-Real-IP", strings.Join(hd.Values("X-Real-Ip"), ","), "127.0.0.1"},
				{"X-Forwarded-Port", strings.Join(hd.Values("X-Forwarded-Port"), ","), u.Port()},
				{"X-Forwarded-Prefix", hd.Get("X-Forwarded-Prefix"), ""},
				{"X_Real_IP", hd.Get("X_Real_Ip") + hd.Get("X_real_ip"), ""},
				{"X-Hop", hd.Get("X-Hop"), ""},
			} {
				if c.got != c.want {
					t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
				}
			}
		})
	}
}

func TestBalancing(t *testing.T) {
	t.Run("round-robin spreads requests evenly", func(t *testing.T) {
		port, ins := startInstances(t, "rr", 3, nil)
		h := startProxy(t, Config{}, httpService("default", "rr", port, ins...))
		for i := 0; i < 300; i++ {
			if resp, b := h.get(t, nil, "rr.default.localhost", "/"); resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, b)
			}
		}
		for _, in := range ins {
			if n := in.hits.Load(); n != 100 {
				t.Fatalf("%s got %d of 300 requests, want 100", in.name, n)
			}
		}
	})
	t.Run("least-requests keeps load off a slow instance", func(t *testing.T) {
		slow := func(name string) http.Handler {
			h := echoHandler(name)
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if strings.HasSuffix(name, "-0") {
					time.Sleep(100 * time.Millisecond)
				}
				h.ServeHTTP(w, r)
			})
		}
		shares := map[string]float64{}
		// The server's default, or the App's spec.loadBalancing over it.
		const perApp = "least-requests (the App's)"
		for _, policy := range []string{RoundRobin, LeastRequests, perApp} {
			port, ins := startInstances(t, "lr", 3, slow)
			svc := httpService("default", "lr", port, ins...)
			cfg := Config{Balancer: policy}
			if policy == perApp {
				cfg.Balancer, svc.Balancing = RoundRobin, LeastRequests
			}
			h := startProxy(t, cfg, svc)
			var wg sync.WaitGroup
			stop := time.Now().Add(time.Second)
			for w := 0; w < 8; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for time.Now().Before(stop) {
						req, _ := http.NewRequest(http.MethodGet, h.url, nil)
						req.Host = "lr.default.localhost"
						resp, err := http.DefaultClient.Do(req)
						if err != nil {
							t.Error(err)
							return
						}
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode != http.StatusOK {
							t.Errorf("%s: status %d", policy, resp.StatusCode)
							return
						}
					}
				}()
			}
			wg.Wait()
			total := ins[0].hits.Load() + ins[1].hits.Load() + ins[2].hits.Load()
			if total < 20 {
				t.Fatalf("%s: only %d requests reached the instances", policy, total)
			}
			shares[policy] = float64(ins[0].hits.Load()) / float64(total)
		}
		t.Logf("share of the slow instance: %v", shares)
		if shares[RoundRobin] < 0.30 {
			t.Errorf("round-robin gave the slow instance %.2f, want about a third", shares[RoundRobin])
		}
		for _, policy := range []string{LeastRequests, perApp} {
			if shares[policy] > 0.10 {
				t.Errorf("%s gave the slow instance %.2f, want under 0.10", policy, shares[policy])
			}
		}
	})
}

func TestRetryOnConnectError(t *testing.T) {
	port, ins := startInstances(t, "live", 1, nil)
	dead := deadIP(t, port)
	svc := httpService("default", "retry", port, ins...)
	svc.Ready = append([]discovery.Endpoint{{Instance: "dead-0", IP: dead}}, svc.Ready...)
	reg := prometheus.NewRegistry()
	h := startProxy(t, Config{Registerer: reg, EjectAfter: 1000}, svc)

	for i := 0; i < 20; i++ {
		method := []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete}[i%4]
		body := fmt.Sprintf("payload-%d", i)
		req, _ := http.NewRequest(method, h.url+"/r", strings.NewReader(body))
		req.Host = "retry.default.localhost"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s %d: status %d: %s", method, i, resp.StatusCode, b)
		}
		if e := decodeEcho(t, b); e.Body != body || e.Method != method {
			t.Fatalf("app got %s %q, want %s %q", e.Method, e.Body, method, body)
		}
	}
	retries := counterValue(t, h.p.m.retries.WithLabelValues("default", "retry"))
	connErrs := counterValue(t, h.p.m.connectErrors.WithLabelValues("default", "retry"))
	if retries < 5 || retries != connErrs {
		t.Fatalf("retries = %v, connect errors = %v: want about half the requests retried, once per connect error", retries, connErrs)
	}
}

func TestEjection(t *testing.T) {
	port, ins := startInstances(t, "live", 1, nil)
	dead := deadIP(t, port)
	svc := httpService("default", "ej", port, ins...)
	svc.Ready = append(svc.Ready, discovery.Endpoint{Instance: "dead-0", IP: dead})
	h := startProxy(t, Config{EjectAfter: 2, EjectFor: time.Minute}, svc)
	for i := 0; i < 40; i++ {
		if resp, b := h.get(t, nil, "ej.default.localhost", "/"); resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, b)
		}
	}
	if n := counterValue(t, h.p.m.connectErrors.WithLabelValues("default", "ej")); n != 2 {
		t.Fatalf("connect errors = %v, want 2: the dead instance should be ejected after two", n)
	}
	if n := counterValue(t, h.p.m.ejections.WithLabelValues("default", "ej")); n != 1 {
		t.Fatalf("ejections = %v, want 1", n)
	}
}

func TestWebSocketPassThrough(t *testing.T) {
	// The app completes a WebSocket-style upgrade and then echoes raw bytes
	// upper-cased; the proxy must relay the 101 and both byte streams.
	port, ins := startInstances(t, "ws", 1, tunnelApp(false))
	h := startProxy(t, Config{}, httpService("default", "ws", port, ins...))
	c, err := net.Dial("tcp", strings.TrimPrefix(h.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET /chat HTTP/1.1\r\nHost: ws.default.localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("X-Instance") != "ws-0" {
		t.Fatalf("response = %d %v", resp.StatusCode, resp.Header)
	}
	fmt.Fprintf(c, "hello over the tunnel\n")
	line, err := br.ReadString('\n')
	if err != nil || line != "HELLO OVER THE TUNNEL\n" {
		t.Fatalf("echo = %q, %v", line, err)
	}
}

func TestH2C(t *testing.T) {
	port, ins := startInstances(t, "h2c", 1, nil)
	h := startProxy(t, Config{}, httpService("default", "h2c", port, ins...))
	resp, body := h.get(t, h2cClient(t, 0), "h2c.default.localhost", "/h2")
	if resp.ProtoMajor != 2 {
		t.Fatalf("client spoke %s, want HTTP/2", resp.Proto)
	}
	if resp.StatusCode != 200 || decodeEcho(t, body).Instance != "h2c-0" {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
}

// testCerts issues a certificate per host from a throwaway CA and counts
// which hosts were asked for.
type testCerts struct {
	ca    *x509.Certificate
	key   *ecdsa.PrivateKey
	mu    sync.Mutex
	asked []string
}

func newTestCerts(t *testing.T) *testCerts {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	return &testCerts{ca: ca, key: key}
}

func (c *testCerts) GetCertificate(host string) (*tls.Certificate, error) {
	c.mu.Lock()
	c.asked = append(c.asked, host)
	c.mu.Unlock()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: host},
		DNSNames: []string{host}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.ca, &key.PublicKey, c.key)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

func TestTLSWithSNI(t *testing.T) {
	port, ins := startInstances(t, "tls", 1, nil)
	svc := httpService("default", "shop", port, ins...)
	svc.Routes = []v1.Route{{Host: "shop.example.com", Path: "/", TLS: "shop-cert"}, {Host: "api.example.com", Path: "/", TLS: "auto"},
		{Host: "legacy.example.com", TLS: "auto", AllowHTTP: true}}
	certs := newTestCerts(t)
	tln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := startProxyTLS(t, Config{Certificates: certs}, tln, svc)
	pool := x509.NewCertPool()
	pool.AddCert(certs.ca)

	for _, host := range []string{"shop.example.com", "api.example.com"} {
		t.Run("a routed host gets its own certificate over HTTP/2: "+host, func(t *testing.T) {
			tr := &http.Transport{
				TLSClientConfig:   &tls.Config{RootCAs: pool, ServerName: host},
				ForceAttemptHTTP2: true,
			}
			defer tr.CloseIdleConnections()
			req, _ := http.NewRequest(http.MethodGet, "https://"+tln.Addr().String()+"/secure", nil)
			req.Host = host
			resp, err := (&http.Client{Transport: tr}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.ProtoMajor != 2 {
				t.Errorf("proto = %s, want HTTP/2", resp.Proto)
			}
			if got := resp.TLS.PeerCertificates[0].DNSNames; len(got) != 1 || got[0] != host {
				t.Errorf("certificate names %v, want %s", got, host)
			}
			e := decodeEcho(t, b)
			if p := http.Header(e.Header).Get("X-Forwarded-Proto"); p != "https" {
				t.Errorf("X-Forwarded-Proto = %q, want https", p)
			}
		})
	}
	t.Run("plain HTTP to a TLS route is redirected to HTTPS unless it allows HTTP", func(t *testing.T) {
		_, httpsPort, _ := net.SplitHostPort(tln.Addr().String())
		noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		for _, tc := range []struct {
			host, method, target string
			status               int
			location             string
			forwardedProto       string
		}{
			{"shop.example.com", http.MethodGet, "/cart?id=7", http.StatusPermanentRedirect, "https://shop.example.com:" + httpsPort + "/cart?id=7", ""},
			{"API.example.com:80", http.MethodPost, "/v1/orders", http.StatusPermanentRedirect, "https://api.example.com:" + httpsPort + "/v1/orders", ""},
			{"legacy.example.com", http.MethodGet, "/plain", http.StatusOK, "", ""},
			{"shop.default.localhost", http.MethodGet, "/", http.StatusOK, "", ""}, // the default host has no TLS
			// A TLS-terminating proxy in front: a redirect would loop.
			{"shop.example.com", http.MethodGet, "/behind-a-proxy", http.StatusOK, "", "https"},
		} {
			req, _ := http.NewRequest(tc.method, h.url+tc.target, strings.NewReader("body"))
			req.Host = tc.host
			if tc.forwardedProto != "" {
				req.Header.Set("X-Forwarded-Proto", tc.forwardedProto)
			}
			resp, err := noFollow.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || resp.Header.Get("Location") != tc.location {
				t.Errorf("%s http://%s%s: %d, Location %q; want %d, %q", tc.method, tc.host, tc.target, resp.StatusCode, resp.Header.Get("Location"), tc.status, tc.location)
			}
		}
	})
	t.Run("OPTIONS * is not redirected", func(t *testing.T) {
		c, err := net.Dial("tcp", strings.TrimPrefix(h.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprint(c, "OPTIONS * HTTP/1.1\r\nHost: shop.example.com\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusPermanentRedirect {
			t.Fatalf("OPTIONS * got a redirect to %q", resp.Header.Get("Location"))
		}
	})
	t.Run("an unrouted host gets no certificate", func(t *testing.T) {
		c, err := tls.Dial("tcp", tln.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "evil.example.com"})
		if err == nil {
			c.Close()
			t.Fatal("handshake succeeded for an unrouted host")
		}
		certs.mu.Lock()
		defer certs.mu.Unlock()
		for _, a := range certs.asked {
			if a == "evil.example.com" {
				t.Fatal("the certificate source was asked for an unrouted host")
			}
		}
	})
	_ = h
}

func TestAccessLogAndMetrics(t *testing.T) {
	port, ins := startInstances(t, "m", 1, nil)
	var buf syncBuffer
	reg := prometheus.NewRegistry()
	src := discovery.NewBroadcaster()
	src.Publish(snapshot(httpService("default", "m", port, ins...)))
	p, err := New(Config{AccessLog: true, Registerer: reg, RateWindow: 2 * time.Second}, src, slog.New(slog.NewJSONHandler(&buf, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.Run(ctx)
	srv := &http.Server{Handler: p}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	deadline := time.Now().Add(2500 * time.Millisecond)
	n := 0
	for time.Now().Before(deadline) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+ln.Addr().String()+"/logged", nil)
		req.Host = "m.default.localhost"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		n++
		time.Sleep(10 * time.Millisecond)
	}
	if got := counterValue(t, p.m.requests.WithLabelValues("default", "m", "2xx")); got != float64(n) {
		t.Fatalf("2xx counter = %v, want %d", got, n)
	}
	rate := p.RequestRate("default", "m")
	want := float64(n) / 2.5
	if rate < want*0.6 || rate > want*1.4 {
		t.Fatalf("RequestRate = %.1f/s, want about %.1f/s", rate, want)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var observed uint64
	for _, mf := range mfs {
		if mf.GetName() == "gantry_ingress_request_duration_seconds" {
			for _, m := range mf.GetMetric() {
				observed += m.GetHistogram().GetSampleCount()
			}
		}
	}
	if observed != uint64(n) {
		t.Fatalf("latency histogram has %d observations, want %d", observed, n)
	}
	line, _, _ := strings.Cut(buf.String(), "\n")
	var entry map[string]any
	if err := json.Unmarshal([]byte(line), &entry); err != nil {
		t.Fatalf("access log line %q: %v", line, err)
	}
	for _, k := range []string{"method", "host", "path", "status", "bytes", "duration", "upstream", "app"} {
		if _, ok := entry[k]; !ok {
			t.Errorf("access log lacks %q: %s", k, line)
		}
	}
	if entry["host"] != "m.default.localhost" || entry["path"] != "/logged" || entry["status"] != float64(200) || entry["upstream"] != ins[0].ip+fmt.Sprint(":", port) {
		t.Errorf("access log entry = %s", line)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// Without an HTTPS listener there is nowhere to redirect to: a TLS route
// is served over plain HTTP.
func TestTLSRouteWithoutHTTPSIsServedOverHTTP(t *testing.T) {
	port, ins := startInstances(t, "plain", 1, nil)
	svc := httpService("default", "shop", port, ins...)
	svc.Routes = []v1.Route{{Host: "shop.example.com", TLS: "auto"}}
	h := startProxy(t, Config{}, svc)
	if resp, _ := h.get(t, http.DefaultClient, "shop.example.com", "/"); resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200 from the instance", resp.StatusCode)
	}
}

type failingCerts struct{}

func (failingCerts) GetCertificate(host string) (*tls.Certificate, error) {
	if strings.HasSuffix(host, ".localhost") {
		return nil, fmt.Errorf("%w (%s)", ErrNoTLSRoute, host)
	}
	return nil, fmt.Errorf("secret %q does not exist", "broken-cert")
}

// A routed host without a usable certificate shows its clients only a
// failed handshake; the server says why in its log, once per route
// however many handshakes fail and whatever names clients send under a
// wildcard, and nothing for hosts no route serves or none with tls.
func TestACertificateFailureIsLoggedOncePerRoute(t *testing.T) {
	svc := httpService("default", "broken", 8080)
	svc.Routes = []v1.Route{{Host: "broken.example.com", TLS: "broken-cert"}, {Host: "*.tenants.example.com", TLS: "broken-cert"}}
	var warnings atomic.Int32
	log := slog.New(countingHandler{testLogger(t).Handler(), slog.LevelWarn, &warnings})
	p, err := New(Config{Certificates: failingCerts{}}, newSource(svc), log)
	if err != nil {
		t.Fatal(err)
	}
	get := p.tlsConfig().GetCertificate
	for i := range 200 {
		for _, name := range []string{"broken.example.com", fmt.Sprintf("t%d.tenants.example.com", i)} {
			if _, err := get(&tls.ClientHelloInfo{ServerName: name}); err == nil || !strings.Contains(err.Error(), "broken-cert") {
				t.Fatalf("handshake for %s: %v, want the certificate's failure", name, err)
			}
		}
	}
	for _, name := range []string{"unrouted.example.com", "broken.default.localhost"} {
		if _, err := get(&tls.ClientHelloInfo{ServerName: name}); err == nil {
			t.Fatalf("%s got a certificate", name)
		}
	}
	if n := warnings.Load(); n != 2 {
		t.Errorf("%d warnings logged for 400 failed handshakes on two routes, want 2", n)
	}
}

// A connect that failed for want of a local resource (the load balancer
// out of file descriptors or ports) counted towards the instance's
// ejection: under such a shortage every healthy instance was ejected in
// turn. Only failures that can be the instance's count.
func TestLocalConnectFailuresDoNotEject(t *testing.T) {
	port, ins := startInstances(t, "local", 1, nil)
	h := startProxy(t, Config{EjectAfter: 2, EjectFor: time.Minute}, httpService("default", "local", port, ins...))
	var ep *endpoint
	for _, be := range h.p.table.Load().backends {
		if be.app.name == "local" {
			ep = be.eps[0]
		}
	}
	if ep == nil {
		t.Fatal("no endpoint of default/local")
	}
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.EADDRNOTAVAIL} {
		for range 3 {
			h.p.connectFailed(ep, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("socket", errno)})
		}
	}
	if n := counterValue(t, h.p.m.ejections.WithLabelValues("default", "local")); n != 0 {
		t.Fatalf("ejections after local failures = %v, want 0", n)
	}
	for range 2 {
		h.p.connectFailed(ep, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)})
	}
	if n := counterValue(t, h.p.m.ejections.WithLabelValues("default", "local")); n != 1 {
		t.Fatalf("ejections after two refused connects = %v, want 1", n)
	}
}

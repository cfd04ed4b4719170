package ingress

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"testing"

	"github.com/gantry-dev/gantry/internal/discovery"
)

// discardWriter is a ResponseWriter that keeps nothing, so the benchmark
// measures the proxy's own work and the upstream exchange only.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}

// BenchmarkServeHTTP proxies GETs to a real instance over loopback,
// without the inbound HTTP server: the cost the ingress adds per request
// on top of net/http.
func BenchmarkServeHTTP(b *testing.B) {
	port, ins := startInstances(b, "bench", 1, func(string) http.Handler {
		body := []byte("hello from the backend\n")
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) })
	})
	src := newSource(httpService("default", "bench", port, ins...))
	p, err := New(Config{}, src, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req, _ := http.NewRequest(http.MethodGet, "http://bench.default.localhost/", nil)
		req.RemoteAddr = "127.0.0.1:40000"
		req.Header.Set("User-Agent", "bench")
		req.Header.Set("Accept", "*/*")
		w := &discardWriter{h: http.Header{}}
		for pb.Next() {
			clear(w.h)
			p.ServeHTTP(w, req)
		}
	})
}

// BenchmarkFront proxies keep-alive GETs from raw client connections
// through the plain listener (the front) to a real instance: the whole
// per-request cost of the ingress process, syscalls included, as the
// bench/ingress comparison with nginx sees it.
func BenchmarkFront(b *testing.B) {
	port, ins := startInstances(b, "bench", 1, func(string) http.Handler {
		body := []byte("hello from the backend\n")
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.Write(body)
		})
	})
	addr := serveForBench(b, httpService("default", "bench", port, ins...))
	const head = "GET / HTTP/1.1\r\nHost: bench.default.localhost\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"
	b.ReportAllocs()
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		req := &http.Request{Method: http.MethodGet}
		for pb.Next() {
			if _, err := io.WriteString(c, head); err != nil {
				b.Error(err)
				return
			}
			resp, err := http.ReadResponse(br, req)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}

// BenchmarkH2C proxies GETs over one h2c connection (prior knowledge)
// to a real instance, each answer 256 KiB written in 8 KiB pieces: the
// HTTP/2 path, where every write of an answer and every flush set and
// lift a stream deadline (ClientSendTimeout).
func BenchmarkH2C(b *testing.B) {
	port, ins := startInstances(b, "bench", 1, func(string) http.Handler {
		piece := make([]byte, 8<<10)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			for range 32 {
				w.Write(piece)
			}
		})
	})
	addr := serveForBench(b, httpService("default", "bench", port, ins...))
	c := h2cClient(b, 0)
	url := "http://" + addr + "/"
	b.ReportAllocs()
	b.SetBytes(256 << 10)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest(http.MethodGet, url, nil)
			req.Host = "bench.default.localhost"
			resp, err := c.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
				b.Errorf("status %d over %s", resp.StatusCode, resp.Proto)
				return
			}
		}
	})
}

// serveForBench runs a proxy for svc on a loopback listener until the
// benchmark ends, and returns the listener's address.
func serveForBench(b *testing.B, svc *discovery.Service) string {
	p, err := New(Config{}, newSource(svc), nil)
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, ln, nil) }()
	b.Cleanup(func() {
		cancel()
		<-done
	})
	return ln.Addr().String()
}

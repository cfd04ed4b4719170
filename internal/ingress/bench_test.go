package ingress

import (
	"net/http"
	"testing"
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

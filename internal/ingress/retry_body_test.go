package ingress

import (
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

// A request whose body reached an instance, which then dropped the
// connection without answering, is not sent again (502), whatever the
// method.
func TestNoRetryAfterTheBodyWasSent(t *testing.T) {
	var got atomic.Int64
	app := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			got.Add(1)
			c, _, _ := http.NewResponseController(w).Hijack()
			c.Close()
		})
	}
	port, ins := startInstances(t, "retrybody", 2, app)
	h := startProxy(t, Config{}, httpService("default", "retrybody", port, ins...))
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodPatch} {
		got.Store(0)
		req, _ := http.NewRequest(m, h.url+"/", strings.NewReader("payload"))
		req.Host = "retrybody.default.localhost"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadGateway || got.Load() != 1 {
			t.Errorf("%s: status %d, instances got it %d times; want 502, once", m, resp.StatusCode, got.Load())
		}
	}
}

package ingress

import (
	"net/http"
	"testing"
	"time"
)

// net/http's server answers with "Connection: close" once Shutdown has
// begun, so a keep-alive client does not send its next request on a
// connection about to close. The front once closed the connection right
// after the answer without saying so; now its answers say it too.
func TestShutdownAnswerSaysClose(t *testing.T) {
	slow := func(name string) http.Handler {
		h := echoHandler(name)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(300 * time.Millisecond)
			h.ServeHTTP(w, r)
		})
	}
	port, ins := startInstances(t, "zzsd", 1, slow)
	h := startProxy(t, Config{}, httpService("default", "zzsd", port, ins...))
	rc := dialRaw(t, h)
	rc.send("GET / HTTP/1.1\r\nHost: zzsd.default.localhost\r\n\r\n")
	time.Sleep(100 * time.Millisecond)
	h.cancel()
	resp, _ := rc.read("GET")
	closed := rc.closed()
	if resp.StatusCode != 200 || !resp.Close || !closed {
		t.Fatalf("status %d, Connection: close %v, closed after %v; want 200, saying close, and closed", resp.StatusCode, resp.Close, closed)
	}
}

package ingress

import (
	"bufio"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// A client that goes away while its upgrade waits for the instance's
// 101, or once the tunnel is up while the instance is silent, must free
// the tunnel count and the instance's connection.
func TestClientLeavingMidUpgradeFreesEverything(t *testing.T) {
	var open atomic.Int64
	release := make(chan struct{})
	defer close(release)
	app := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			open.Add(1)
			defer open.Add(-1)
			defer c.Close()
			if r.URL.Path == "/tunnel" {
				brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
				brw.Flush()
			}
			// Silent until the proxy closes the connection.
			go func() { <-release; c.Close() }()
			io.Copy(io.Discard, brw)
		})
	}
	port, ins := startInstances(t, "upleave", 1, app)
	h := startProxy(t, Config{}, httpService("default", "upleave", port, ins...))
	for _, path := range []string{"/hang", "/tunnel"} {
		rc := dialRaw(t, h)
		rc.send("GET " + path + " HTTP/1.1\r\nHost: upleave.default.localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		deadline := time.Now().Add(2 * time.Second)
		for open.Load() == 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if path == "/tunnel" {
			resp, err := http.ReadResponse(bufio.NewReader(rc.c), nil)
			if err != nil || resp.StatusCode != 101 {
				t.Fatalf("%s: %v %v", path, resp, err)
			}
		}
		rc.c.Close()
		deadline = time.Now().Add(2 * time.Second)
		for (open.Load() > 0 || h.p.tunnels.Load() > 0) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if open.Load() > 0 || h.p.tunnels.Load() > 0 {
			t.Fatalf("%s: 2s after the client left, %d instance connections open and %d tunnels counted", path, open.Load(), h.p.tunnels.Load())
		}
	}
}

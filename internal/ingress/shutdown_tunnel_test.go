package ingress

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"testing"
	"time"
)

// ShutdownTimeout bounds how long in-flight requests and TCP flows may
// run once the context ends. A WebSocket tunnel is an in-flight request
// too, which http.Server.Shutdown does not track: it is cut when the
// timeout runs out, and counted as the 101 it was.
func TestUpgradedTunnelsAreCutAtShutdown(t *testing.T) {
	port, ins := startInstances(t, "wsd", 1, tunnelApp(false))
	h := startProxy(t, Config{ShutdownTimeout: 300 * time.Millisecond}, httpService("default", "wsd", port, ins...))
	c, err := net.Dial("tcp", h.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET /chat HTTP/1.1\r\nHost: wsd.default.localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	fmt.Fprintf(c, "before\n")
	if line, err := br.ReadString('\n'); err != nil || line != "BEFORE\n" {
		t.Fatalf("echo = %q, %v", line, err)
	}

	select {
	case <-h.stop():
		if h.serveErr != nil {
			t.Fatalf("Serve: %v", h.serveErr)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
	time.Sleep(500 * time.Millisecond) // well past ShutdownTimeout
	c.SetDeadline(time.Now().Add(2 * time.Second))
	fmt.Fprintf(c, "after\n")
	if line, err := br.ReadString('\n'); err == nil {
		t.Fatalf("the tunnel still relays %q after Serve returned and ShutdownTimeout passed", line)
	} else if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("the tunnel is still open after Serve returned and ShutdownTimeout passed: it was not cut")
	}
	if n := counterValue(t, h.p.m.requests.WithLabelValues("default", "wsd", "1xx")); n != 1 {
		t.Errorf("the tunnel was counted %v times as a 1xx, want 1", n)
	}
}

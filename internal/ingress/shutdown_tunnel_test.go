package ingress

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// ShutdownTimeout bounds how long in-flight requests and TCP flows may
// run once the context ends. A WebSocket tunnel is an in-flight request
// too, which http.Server.Shutdown does not track: it is cut when the
// timeout runs out, and counted as the 101 it was.
func TestUpgradedTunnelsAreCutAtShutdown(t *testing.T) {
	upgrade := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer c.Close()
			fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
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
	port, ins := startInstances(t, "wsd", 1, upgrade)
	src := newSource(httpService("default", "wsd", port, ins...))
	p, err := New(Config{ShutdownTimeout: 300 * time.Millisecond}, src, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- p.Serve(ctx, ln, nil) }()

	c, err := net.Dial("tcp", ln.Addr().String())
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

	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
	time.Sleep(500 * time.Millisecond) // well past ShutdownTimeout
	c.SetDeadline(time.Now().Add(2 * time.Second))
	fmt.Fprintf(c, "after\n")
	if line, err := br.ReadString('\n'); err == nil {
		t.Fatalf("the tunnel still relays %q after Serve returned and ShutdownTimeout passed", line)
	}
	if n := counterValue(t, p.m.requests.WithLabelValues("default", "wsd", "1xx")); n != 1 {
		t.Errorf("the tunnel was counted %v times as a 1xx, want 1", n)
	}
}

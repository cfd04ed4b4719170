package client_test

import (
	"context"
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/client"
)

// blackhole proxies TCP; hold() makes every connection open so far stop
// forwarding (packets dropped by a middlebox) without closing it. New
// connections work.
type blackhole struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []chan struct{}
}

func (b *blackhole) run(target string) {
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		stop := make(chan struct{})
		b.mu.Lock()
		b.conns = append(b.conns, stop)
		b.mu.Unlock()
		go func() {
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				return
			}
			pipe := func(dst, src net.Conn) {
				buf := make([]byte, 32<<10)
				for {
					n, err := src.Read(buf)
					select {
					case <-stop:
						// swallow: a silent drop
						if err != nil {
							return
						}
						continue
					default:
					}
					if n > 0 {
						dst.Write(buf[:n])
					}
					if err != nil {
						return
					}
				}
			}
			go pipe(s, c)
			pipe(c, s)
		}()
	}
}

func (b *blackhole) hold() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, s := range b.conns {
		close(s)
	}
	b.conns = nil
}

// The client sent every request over one HTTP/2 connection with no health
// check: one the network dropped silently (a firewall or NAT that lost its
// state, while new connections work) held every request, an agent's
// heartbeats included, until TCP gave up some 15 minutes later, and the
// node was evicted meanwhile. A ping finds it now within HealthCheck twice.
func TestASilentlyDroppedConnectionIsReplaced(t *testing.T) {
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	ts.EnableHTTP2 = true
	ts.StartTLS()
	defer ts.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	bh := &blackhole{ln: ln}
	go bh.run(ts.Listener.Addr().String())
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw})
	c, err := client.New(client.Config{Server: "https://" + ln.Addr().String(), CA: caPEM, Timeout: 3 * time.Second, HealthCheck: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := c.Heartbeat(ctx, "n1"); err != nil {
		t.Fatal(err)
	}
	bh.hold()
	start := time.Now()
	for {
		err := c.Heartbeat(ctx, "n1")
		if err == nil {
			break
		}
		if time.Since(start) > 15*time.Second {
			t.Fatalf("no heartbeat got through in 15 s after the connection went silent, though new connections work: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

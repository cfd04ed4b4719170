package ingress

import (
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/discovery"
)

// Flows opened while the snapshot keeps changing (instances come and go,
// proxyProtocol flips) all end, and leave no flow, no active count and
// no inflight count behind. Run with -race.
func TestTCPFlowsUnderChurnLeaveNothing(t *testing.T) {
	port, eps := startEchoServers(t, 3)
	lo, hi := freePortRange(t)
	svc := func(pp string, ready ...discovery.Endpoint) *discovery.Service {
		return &discovery.Service{Namespace: "default", Name: "db",
			Ports: []v1.Port{{Name: "pg", Port: port, Protocol: v1.ProtocolTCP, Expose: "tcp", ProxyProtocol: pp}},
			Ready: ready}
	}
	h := startProxy(t, Config{NodePortMin: lo, NodePortMax: hi, EjectAfter: 1, EjectFor: 50 * time.Millisecond})
	h.publishTCP(t, svc("", eps...))
	np, _ := h.p.NodePort("default", "db", "pg")
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(np))
	dead := discovery.Endpoint{Instance: "dead", IP: deadIP(t, port)}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := net.DialTimeout("tcp", addr, time.Second)
				if err != nil {
					continue
				}
				c.SetDeadline(time.Now().Add(3 * time.Second))
				fmt.Fprintf(c, "hello %d\n", i)
				if i%2 == 0 {
					c.(*net.TCPConn).CloseWrite()
					io.Copy(io.Discard, c)
				}
				c.Close()
			}
		}()
	}
	pps := []string{"", v1.ProxyProtocolV1, v1.ProxyProtocolV2}
	for i := range 60 {
		ready := []discovery.Endpoint{dead}
		for j, e := range eps {
			if (i+j)%3 != 0 {
				ready = append(ready, e)
			}
		}
		h.publishTCP(t, svc(pps[i%3], ready...))
		time.Sleep(3 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for {
		h.p.mu.Lock()
		tb := h.p.tcp
		h.p.mu.Unlock()
		tb.flowMu.Lock()
		flows := len(tb.flows)
		tb.flowMu.Unlock()
		h.p.mu.Lock()
		active := tb.services["default/db/pg"].active.Load()
		var inflight int64
		for _, e := range h.p.endpoints {
			inflight += e.inflight.Load()
		}
		for e := range h.p.draining {
			inflight += e.inflight.Load()
		}
		h.p.mu.Unlock()
		if flows == 0 && active == 0 && inflight == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after every client closed: %d flows, %d active, %d inflight", flows, active, inflight)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

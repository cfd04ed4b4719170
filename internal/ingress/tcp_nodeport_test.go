package ingress

import (
	"bufio"
	"errors"
	"maps"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/discovery"
)

// An automatically chosen node port was kept only in the balancer's
// memory. After a server restart the ports were chosen again in key
// order, so an App created later but sorting first took the port the
// other App's clients used: they silently reached the wrong App. The
// port the App's status records is chosen again.
func TestChosenNodePortSurvivesARestart(t *testing.T) {
	targets := startGreeters(t, "alpha", "zeta")
	lo, hi := freePortRange(t)
	svc := func(name string, target int) *discovery.Service {
		return &discovery.Service{Namespace: "default", Name: name,
			Ports: []v1.Port{{Name: "g", Port: target, Protocol: v1.ProtocolTCP, Expose: "tcp"}},
			Ready: []discovery.Endpoint{{Instance: name + "-0", IP: "127.0.0.1"}}}
	}
	zeta, alpha := svc("zeta", targets[1]), svc("alpha", targets[0])

	// First life: zeta exists first, alpha is created afterwards.
	h1 := startProxy(t, Config{NodePortMin: lo, NodePortMax: hi}, zeta)
	h1.publishTCP(t, zeta, alpha)
	before := h1.p.NodePorts()
	<-h1.stop()

	// The server restarts with both Apps stored, their statuses naming
	// the ports they were given.
	zeta.NodePorts = map[string]int{"g": before["default/zeta/g"]}
	alpha.NodePorts = map[string]int{"g": before["default/alpha/g"]}
	h2 := startProxy(t, Config{NodePortMin: lo, NodePortMax: hi}, zeta, alpha)
	if after := h2.p.NodePorts(); !maps.Equal(before, after) {
		t.Fatalf("node ports changed over a restart: %v before, %v after", before, after)
	}
	if g, err := greeting(net.JoinHostPort("127.0.0.1", strconv.Itoa(before["default/zeta/g"]))); err != nil || g != "zeta" {
		t.Fatalf("zeta's node port answers %q, %v after the restart", g, err)
	}
}

// A rollout that changed an exposed port's number (target) closed the
// node port's listener and opened a new one, although the target is not
// used to relay (each endpoint carries its own port). The new one's flow
// count started at 0, so MaxTCPFlows no longer bounded the port's flows.
func TestNodePortTargetChangeKeepsTheFlowCap(t *testing.T) {
	targets := startGreeters(t, "g", "g")
	lo, hi := freePortRange(t)
	h := startProxy(t, Config{NodePortMin: lo, NodePortMax: hi, MaxTCPFlows: 1})
	svc := func(target int) *discovery.Service {
		return &discovery.Service{Namespace: "default", Name: "capped",
			Ports: []v1.Port{{Name: "g", Port: target, Protocol: v1.ProtocolTCP, Expose: "tcp"}},
			Ready: []discovery.Endpoint{{Instance: "g-0", IP: "127.0.0.1", Ports: map[string]int{"g": targets[0]}}}}
	}
	h.publishTCP(t, svc(targets[0]))
	np, _ := h.p.NodePort("default", "capped", "g")
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(np))
	open := func() error {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			return err
		}
		t.Cleanup(func() { c.Close() })
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err = bufio.NewReader(c).ReadString('\n')
		return err
	}
	if err := open(); err != nil {
		t.Fatal(err)
	}
	if err := open(); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("second flow with MaxTCPFlows 1: %v, want reset", err)
	}
	// The App's port moves to targets[1]; the running instance keeps
	// listening on its own revision's number (Ports).
	h.publishTCP(t, svc(targets[1]))
	if np2, _ := h.p.NodePort("default", "capped", "g"); np2 != np {
		t.Fatalf("node port moved %d -> %d", np, np2)
	}
	if err := open(); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("after the port's target changed, a second flow with MaxTCPFlows 1: %v; want it reset", err)
	}
}

// The same re-listen refused or reset connections that arrived while the
// rollout's snapshot was applied (49 of 2,745 in one run), although a
// rollout that changes a port's number is to drop nothing.
func TestNodePortTargetChangeDropsNoConnection(t *testing.T) {
	targets := startGreeters(t, "g", "g")
	lo, hi := freePortRange(t)
	h := startProxy(t, Config{NodePortMin: lo, NodePortMax: hi})
	svc := func(target int) *discovery.Service {
		return &discovery.Service{Namespace: "default", Name: "moving",
			Ports: []v1.Port{{Name: "g", Port: target, Protocol: v1.ProtocolTCP, Expose: "tcp"}},
			Ready: []discovery.Endpoint{{Instance: "g-0", IP: "127.0.0.1", Ports: map[string]int{"g": targets[0]}}}}
	}
	h.publishTCP(t, svc(targets[0]))
	np, _ := h.p.NodePort("default", "moving", "g")
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(np))
	var stop atomic.Bool
	var failed, ok atomic.Int32
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				if _, err := greeting(addr); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				} else {
					ok.Add(1)
				}
			}
		}()
	}
	for i := range 40 {
		h.publishTCP(t, svc(targets[i%2]))
		time.Sleep(5 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d of %d connections failed while the port's number changed (first: %v)", failed.Load(), failed.Load()+ok.Load(), firstErr.Load())
	}
}

package ingress

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/discovery"
)

// An explicit nodePort wins over a port the balancer allocated to another
// exposed port earlier: that one moves to another port.
func TestAnExplicitNodePortBeatsAnEarlierAllocation(t *testing.T) {
	port, eps := startEchoServers(t, 1)
	lo, hi := freePortRange(t)
	auto := &discovery.Service{
		Namespace: "default", Name: "auto",
		Ports: []v1.Port{{Name: "pg", Port: port, Protocol: v1.ProtocolTCP, Expose: "tcp"}},
		Ready: eps,
	}
	h := startProxy(t, Config{NodePortMin: lo, NodePortMax: hi}, auto)
	taken, ok := h.p.NodePort("default", "auto", "pg")
	if !ok {
		t.Fatal("auto was not published")
	}
	explicit := &discovery.Service{
		Namespace: "default", Name: "pinned",
		Ports: []v1.Port{{Name: "pg", Port: port, Protocol: v1.ProtocolTCP, Expose: "tcp", NodePort: taken}},
		Ready: eps,
	}
	h.publish(t, auto, explicit)
	got, ok := h.p.NodePort("default", "pinned", "pg")
	if !ok || got != taken {
		t.Fatalf("the app that asked for node port %d explicitly got %d, %v (NodePorts %v)", taken, got, ok, h.p.NodePorts())
	}
	if np, ok := h.p.NodePort("default", "auto", "pg"); !ok || np == taken {
		t.Fatalf("default/auto should have moved to another port, has %d, %v", np, ok)
	}
	if g, _ := talk(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(taken))); !strings.HasPrefix(g, "echo-") {
		t.Fatalf("greeting %q", g)
	}
}

// startGreeters starts one TCP server per name on loopback, each on a
// port of its own, that greets every connection with its name.
func startGreeters(t *testing.T, names ...string) []int {
	t.Helper()
	var ports []int
	for _, name := range names {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		serveConns(ln, func(c net.Conn) {
			fmt.Fprintf(c, "%s\n", name)
			io.Copy(io.Discard, c)
		})
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// portOutside returns a port that nothing listens on and that lies
// outside lo-hi.
func portOutside(t *testing.T, lo, hi int) int {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if p < lo || p > hi {
			return p
		}
	}
	t.Fatal("no free port outside the node port range")
	return 0
}

// greeting dials a node port and returns the first line, or an error if
// nothing accepts there.
func greeting(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// Each node port the balancer publishes must relay to the port that
// asked for it, and a node port outside the range is refused: Gantry's
// own ports (7443, 5000, 5353, 7445, 53 on the bridge) lie outside it,
// and some open after the load balancer when the server starts.
func TestNodePortsArePublishedOnlyWhereTheyBelong(t *testing.T) {
	targets := startGreeters(t, "a", "b")
	lo, hi := freePortRange(t)
	h := startProxy(t, Config{NodePortMin: lo, NodePortMax: hi})
	free := freeInRange(t, lo, hi, 4)
	outside := portOutside(t, lo, hi)
	exposed := func(name string, target, nodePort int) v1.Port {
		return v1.Port{Name: name, Port: target, Protocol: v1.ProtocolTCP, Expose: "tcp", NodePort: nodePort}
	}
	for i, tc := range []struct {
		name  string
		ports []v1.Port
		// relays maps each node port that must be published to the
		// greeting of the target behind it; refused lists node ports
		// that must not accept.
		relays  map[int]string
		refused []int
	}{
		{
			name:   "named ports each reach their own target",
			ports:  []v1.Port{exposed("x", targets[0], free[0]), exposed("y", targets[1], free[1])},
			relays: map[int]string{free[0]: "a", free[1]: "b"},
		},
		{
			name:    "of two unnamed exposed ports only the first is published, to its own target",
			ports:   []v1.Port{exposed("", targets[0], free[2]), exposed("", targets[1], free[3])},
			relays:  map[int]string{free[2]: "a"},
			refused: []int{free[3]},
		},
		{
			name:    "an explicit node port outside the node port range is not published",
			ports:   []v1.Port{exposed("pg", targets[0], outside)},
			refused: []int{outside},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc := &discovery.Service{
				Namespace: "default", Name: fmt.Sprintf("app%d", i), Ports: tc.ports,
				Ready: []discovery.Endpoint{{Instance: "i-0", IP: "127.0.0.1"}},
			}
			h.publishTCP(t, svc)
			for np, want := range tc.relays {
				if got, err := greeting(net.JoinHostPort("127.0.0.1", strconv.Itoa(np))); err != nil || got != want {
					t.Errorf("node port %d greets %q, %v; want %q (NodePorts %v)", np, got, err, want, h.p.NodePorts())
				}
			}
			for _, np := range tc.refused {
				if got, err := greeting(net.JoinHostPort("127.0.0.1", strconv.Itoa(np))); err == nil {
					t.Errorf("node port %d is published (greets %q); want it refused", np, got)
				}
			}
		})
	}
}

// countingHandler counts the records at level or above.
type countingHandler struct {
	slog.Handler
	level slog.Level
	n     *atomic.Int32
}

func (h countingHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= h.level {
		h.n.Add(1)
	}
	return h.Handler.Handle(ctx, r)
}

// Snapshots come with every instance change in the cluster; a port that
// cannot be published says why once, not on each of them, and again
// only when the reason changes.
func TestARefusedNodePortIsLoggedOnce(t *testing.T) {
	lo, hi := freePortRange(t)
	busy, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(lo)))
	if err != nil {
		t.Skipf("port %d: %v", lo, err)
	}
	t.Cleanup(func() { busy.Close() })
	var errs atomic.Int32
	log := slog.New(countingHandler{testLogger(t).Handler(), slog.LevelError, &errs})
	p, err := New(Config{NodePortMin: lo, NodePortMax: hi, TCPBindAddress: "127.0.0.1"}, newSource(), log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tb := newTCPBalancer(ctx, p)
	t.Cleanup(func() { cancel(); tb.shutdown(time.Second) })
	svc := func(nodePort int) *discovery.Service {
		return &discovery.Service{Namespace: "default", Name: "db",
			Ports: []v1.Port{{Name: "pg", Port: 5432, Protocol: v1.ProtocolTCP, Expose: "tcp", NodePort: nodePort}}}
	}
	outside := portOutside(t, lo, hi)
	for _, tc := range []struct {
		name      string
		nodePort  int
		newErrors int32
	}{
		{"a node port in use is logged", lo, 1},
		{"and not again for the next snapshot", lo, 0},
		{"nor the one after", lo, 0},
		{"a new reason is logged", outside, 1},
		{"but only once", outside, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := errs.Load()
			p.mu.Lock()
			tb.reconcile(snapshot(svc(tc.nodePort)))
			p.mu.Unlock()
			if got := errs.Load() - before; got != tc.newErrors {
				t.Errorf("%d errors logged, want %d", got, tc.newErrors)
			}
		})
	}
}

// Node ports are given and taken back as Apps change: a port that comes
// to ask for a node port by number gives back the one it was given, so
// the next App gets the lowest free port, and removing expose closes the
// port for good.
func TestNodePortsFollowTheApps(t *testing.T) {
	targets := startGreeters(t, "a")
	lo, hi := freePortRange(t)
	h := startProxy(t, Config{NodePortMin: lo, NodePortMax: hi})
	// The balancer gives the lowest port it can bind: first, then second.
	free := freeInRange(t, lo, hi, 3)
	first, second, asked := free[0], free[1], free[2]
	app := func(name string, nodePort int) *discovery.Service {
		return &discovery.Service{
			Namespace: "default", Name: name,
			Ports: []v1.Port{{Name: "p", Port: targets[0], Protocol: v1.ProtocolTCP, Expose: "tcp", NodePort: nodePort}},
			Ready: []discovery.Endpoint{{Instance: name + "-0", IP: "127.0.0.1"}},
		}
	}
	unexposed := func(s *discovery.Service) *discovery.Service {
		s.Ports[0].Expose = ""
		return s
	}
	for _, step := range []struct {
		name string
		apps []*discovery.Service
		want map[string]int // namespace/app/port → node port
		shut []int          // node ports that must no longer accept
	}{
		{"an app is given the lowest port", []*discovery.Service{app("a", 0)}, map[string]int{"default/a/p": first}, nil},
		{"asking for a port by number moves it there", []*discovery.Service{app("a", asked)}, map[string]int{"default/a/p": asked}, []int{first}},
		{"the port it was given goes to the next app", []*discovery.Service{app("a", asked), app("b", 0)},
			map[string]int{"default/a/p": asked, "default/b/p": first}, nil},
		{"dropping the number keeps the port it has", []*discovery.Service{app("a", 0), app("b", 0)},
			map[string]int{"default/a/p": asked, "default/b/p": first}, nil},
		{"removing the app closes its port", []*discovery.Service{app("b", 0)}, map[string]int{"default/b/p": first}, []int{asked}},
		{"adding it back gives it the lowest free port", []*discovery.Service{app("a", 0), app("b", 0)},
			map[string]int{"default/a/p": second, "default/b/p": first}, []int{asked}},
		{"dropping expose closes the port", []*discovery.Service{app("a", 0), unexposed(app("b", 0))},
			map[string]int{"default/a/p": second}, []int{first}},
		{"exposing it again opens one", []*discovery.Service{app("a", 0), app("b", 0)},
			map[string]int{"default/a/p": second, "default/b/p": first}, nil},
	} {
		t.Run(step.name, func(t *testing.T) {
			h.publishTCP(t, step.apps...)
			if got := h.p.NodePorts(); !maps.Equal(got, step.want) {
				t.Fatalf("NodePorts = %v, want %v", got, step.want)
			}
			for _, np := range step.want {
				if g, err := greeting(net.JoinHostPort("127.0.0.1", strconv.Itoa(np))); err != nil || g != "a" {
					t.Errorf("node port %d: %q, %v", np, g, err)
				}
			}
			for _, np := range step.shut {
				if _, err := greeting(net.JoinHostPort("127.0.0.1", strconv.Itoa(np))); err == nil {
					t.Errorf("node port %d still accepts", np)
				}
			}
		})
	}
}

// publishTCP is publish that also waits for the node ports to follow:
// the table (and so Revision) is swapped in before apply reconciles the
// listeners, under Proxy.mu, which NodePorts waits for.
func (h *harness) publishTCP(t *testing.T, services ...*discovery.Service) {
	t.Helper()
	h.publish(t, services...)
	h.p.NodePorts()
}

// freeInRange returns the n lowest ports of lo-hi that can be bound now.
// freePortRange only knows its first port free: the others may be taken
// by any listener or connection opened since, the proxy's own included.
func freeInRange(t *testing.T, lo, hi, n int) []int {
	t.Helper()
	var out []int
	for p := lo; p <= hi && len(out) < n; p++ {
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		ln.Close()
		out = append(out, p)
	}
	if len(out) < n {
		t.Fatalf("only %d of %d ports free in %d-%d", len(out), n, lo, hi)
	}
	return out
}

// Config.OnNodePorts hears of every change of the published node ports,
// and only of changes.
func TestOnNodePortsReportsChanges(t *testing.T) {
	port, eps := startEchoServers(t, 1)
	lo, hi := freePortRange(t)
	var calls []map[string]int
	svc := func(name string) *discovery.Service {
		return &discovery.Service{Namespace: "default", Name: name,
			Ports: []v1.Port{{Name: "pg", Port: port, Protocol: v1.ProtocolTCP, Expose: "tcp"}}, Ready: eps}
	}
	h := startProxy(t, Config{NodePortMin: lo, NodePortMax: hi, OnNodePorts: func(m map[string]int) { calls = append(calls, m) }}, svc("a"))
	h.publishTCP(t, svc("a"))
	h.publishTCP(t, svc("a"), svc("b"))
	h.publishTCP(t)
	h.p.mu.Lock() // calls is written under the proxy's lock
	defer h.p.mu.Unlock()
	if len(calls) != 3 {
		t.Fatalf("OnNodePorts called %d times (%v), want 3: a, a and b, none", len(calls), calls)
	}
	a, b := calls[1]["default/a/pg"], calls[1]["default/b/pg"]
	if !maps.Equal(calls[0], map[string]int{"default/a/pg": a}) || a == 0 || b == 0 || a == b || len(calls[2]) != 0 {
		t.Fatalf("OnNodePorts calls %v; want a's port, then a's and b's, then none", calls)
	}
}

// A node port relays at most MaxTCPFlows flows at once: a connection
// beyond them is reset at once, and one is taken again when a flow ends.
func TestTCPFlowsAreCapped(t *testing.T) {
	targets := startGreeters(t, "g")
	lo, hi := freePortRange(t)
	h := startProxy(t, Config{NodePortMin: lo, NodePortMax: hi, MaxTCPFlows: 2})
	h.publishTCP(t, &discovery.Service{Namespace: "default", Name: "capped",
		Ports: []v1.Port{{Name: "g", Port: targets[0], Protocol: v1.ProtocolTCP, Expose: "tcp"}},
		Ready: []discovery.Endpoint{{Instance: "g-0", IP: "127.0.0.1"}}})
	np, ok := h.p.NodePort("default", "capped", "g")
	if !ok {
		t.Fatal("not published")
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(np))
	// open connects and reads the greeting, or the error instead.
	open := func() (net.Conn, error) {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			return nil, err
		}
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if g, err := bufio.NewReader(c).ReadString('\n'); err != nil || g != "g\n" {
			c.Close()
			return nil, fmt.Errorf("greeting %q: %w", g, err)
		}
		t.Cleanup(func() { c.Close() })
		return c, nil
	}
	var held []net.Conn
	for range 2 {
		c, err := open()
		if err != nil {
			t.Fatalf("a flow under the cap: %v", err)
		}
		held = append(held, c)
	}
	if _, err := open(); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("a third flow with MaxTCPFlows 2: %v, want it reset", err)
	}
	held[0].Close()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := open(); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("5 s after a flow ended, a new one: %v", err)
		}
	}
}

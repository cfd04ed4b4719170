package ingress

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
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

// startEchoServers starts n TCP instances on a shared port. Each greets
// with its name, echoes lines upper-cased, and on the client's half close
// says "bye" and closes.
func startEchoServers(t *testing.T, n int) (int, []discovery.Endpoint) {
	t.Helper()
	for try := 0; try < 20; try++ {
		probe, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := probe.Addr().(*net.TCPAddr).Port
		probe.Close()
		var lns []net.Listener
		var eps []discovery.Endpoint
		for i := 0; i < n; i++ {
			ip := freeIP()
			ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
			if err != nil {
				break
			}
			lns = append(lns, ln)
			eps = append(eps, discovery.Endpoint{Instance: fmt.Sprintf("echo-%d", i), IP: ip})
		}
		if len(lns) < n {
			for _, ln := range lns {
				ln.Close()
			}
			continue
		}
		for i, ln := range lns {
			name := eps[i].Instance
			serveConns(ln, func(c net.Conn) {
				fmt.Fprintf(c, "%s\n", name)
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					fmt.Fprintf(c, "%s\n", strings.ToUpper(sc.Text()))
				}
				fmt.Fprintf(c, "bye\n")
			})
			t.Cleanup(func() { ln.Close() })
		}
		return port, eps
	}
	t.Fatal("no port free on several loopback addresses")
	return 0, nil
}

func freePortRange(t *testing.T) (int, int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return p, p + 20
}

// talk opens a connection, reads the greeting, sends a line, half-closes
// and reads the rest.
func talk(t *testing.T, addr string) (greeting string, rest string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	greeting, err = br.ReadString('\n')
	if err != nil {
		t.Fatalf("greeting: %v", err)
	}
	fmt.Fprintf(c, "ping\n")
	c.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(br)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return strings.TrimSpace(greeting), string(b)
}

func TestTCPExpose(t *testing.T) {
	port, eps := startEchoServers(t, 2)
	lo, hi := freePortRange(t)
	svc := &discovery.Service{
		Namespace: "default", Name: "db",
		Ports: []v1.Port{{Name: "pg", Port: port, Protocol: v1.ProtocolTCP, Expose: "tcp"}},
		Ready: eps,
	}
	h := startProxy(t, Config{NodePortMin: lo, NodePortMax: hi}, svc)
	np, ok := h.p.NodePort("default", "db", "pg")
	if !ok || np < lo || np > hi {
		t.Fatalf("NodePort = %d, %v; want one in %d-%d", np, ok, lo, hi)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(np))

	t.Run("connections are balanced over ready instances and relayed both ways", func(t *testing.T) {
		seen := map[string]int{}
		for i := 0; i < 4; i++ {
			g, rest := talk(t, addr)
			seen[g]++
			if rest != "PING\nbye\n" {
				t.Fatalf("relay = %q, want PING then bye after the half close", rest)
			}
		}
		if seen["echo-0"] != 2 || seen["echo-1"] != 2 {
			t.Fatalf("instances seen %v, want two each", seen)
		}
	})

	t.Run("a refused connect is retried on another instance", func(t *testing.T) {
		withDead := *svc
		withDead.Ready = append([]discovery.Endpoint{{Instance: "dead", IP: deadIP(t, port)}}, eps[0])
		h.publish(t, &withDead)
		for i := 0; i < 6; i++ {
			if g, _ := talk(t, addr); g != "echo-0" {
				t.Fatalf("greeting %q, want echo-0", g)
			}
		}
	})

	t.Run("an explicit node port is used", func(t *testing.T) {
		want := hi // in the node port range, and not the one allocated
		explicit := *svc
		explicit.Ports = []v1.Port{{Name: "pg", Port: port, Protocol: v1.ProtocolTCP, Expose: "tcp", NodePort: want}}
		h.publish(t, &explicit)
		if got, ok := h.p.NodePort("default", "db", "pg"); !ok || got != want {
			t.Fatalf("NodePort = %d, %v; want %d", got, ok, want)
		}
		if g, _ := talk(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(want))); !strings.HasPrefix(g, "echo-") {
			t.Fatalf("greeting %q", g)
		}
		if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			t.Fatal("the old node port still accepts connections")
		}
		addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(want))
	})

	t.Run("removing the app closes its port but not its open flows", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		br := bufio.NewReader(c)
		if _, err := br.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
		h.publish(t)
		if _, ok := h.p.NodePort("default", "db", "pg"); ok {
			t.Fatal("NodePort still reported after the app left")
		}
		if c2, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c2.Close()
			t.Fatal("the node port still accepts connections")
		}
		fmt.Fprintf(c, "still here\n")
		if line, err := br.ReadString('\n'); err != nil || line != "STILL HERE\n" {
			t.Fatalf("open flow: %q, %v", line, err)
		}
	})
}

// Once one side of a relayed flow has finished sending, the other must
// keep making progress: a half-closed flow that goes quiet for
// TCPHalfCloseTimeout is closed, while one still sending is not.
func TestTCPHalfClosedFlowsEndWhenQuiet(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	port := ln.Addr().(*net.TCPAddr).Port
	// The instance greets, then for the client's first line "trickle N"
	// sends N dots 100 ms apart and closes, for "flood" sends until a
	// write fails, and for anything else never sends or closes again.
	floodEnded := make(chan error, 1)
	serveConns(ln, func(c net.Conn) {
		fmt.Fprintf(c, "hello\n")
		line, _ := bufio.NewReader(c).ReadString('\n')
		if line == "flood\n" {
			chunk := make([]byte, 64<<10)
			for {
				if _, err := c.Write(chunk); err != nil {
					floodEnded <- err
					return
				}
			}
		}
		var n int
		if _, err := fmt.Sscanf(line, "trickle %d", &n); err != nil {
			time.Sleep(10 * time.Second)
			return
		}
		for i := 0; i < n; i++ {
			time.Sleep(100 * time.Millisecond)
			c.Write([]byte("."))
		}
	})
	lo, hi := freePortRange(t)
	svc := &discovery.Service{
		Namespace: "default", Name: "stubborn",
		Ports: []v1.Port{{Name: "raw", Port: port, Protocol: v1.ProtocolTCP, Expose: "tcp"}},
		Ready: []discovery.Endpoint{{Instance: "stubborn-0", IP: "127.0.0.1"}},
	}
	h := startProxy(t, Config{NodePortMin: lo, NodePortMax: hi, TCPHalfCloseTimeout: 300 * time.Millisecond}, svc)
	np, ok := h.p.NodePort("default", "stubborn", "raw")
	if !ok {
		t.Fatal("no node port")
	}
	for _, tc := range []struct {
		name, send, want string
	}{
		{"a quiet instance is cut", "wait\n", ""},
		{"an instance still sending is not", "trickle 10\n", ".........."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(np)))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			br := bufio.NewReader(c)
			if g, err := br.ReadString('\n'); err != nil || g != "hello\n" {
				t.Fatalf("greeting %q, %v", g, err)
			}
			fmt.Fprint(c, tc.send)
			c.(*net.TCPConn).CloseWrite()
			start := time.Now()
			rest, err := io.ReadAll(br)
			if err != nil {
				t.Fatalf("after %v: %v (got %q); the half-closed flow was not ended", time.Since(start).Round(time.Millisecond), err, rest)
			}
			if string(rest) != tc.want {
				t.Fatalf("read %q, want %q", rest, tc.want)
			}
		})
	}
	// The relay is then stuck writing, not reading: the flow must end
	// all the same, and the instance see its connection go.
	t.Run("a client that stops reading is cut", func(t *testing.T) {
		c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(np)))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if g, err := bufio.NewReader(c).ReadString('\n'); err != nil || g != "hello\n" {
			t.Fatalf("greeting %q, %v", g, err)
		}
		fmt.Fprint(c, "flood\n")
		c.(*net.TCPConn).CloseWrite()
		select {
		case err := <-floodEnded:
			t.Logf("the instance's writes ended: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatal("the instance still sends 10 s after the client stopped reading; the flow was not cut")
		}
	})
}

// A client of an exposed port with no ready instance is reset at once,
// not left waiting nor sent a clean end of stream. Clients reconnect in loops, so that is logged when
// it starts and not again for every connection until an instance takes
// one.
func TestTCPWithNoReadyInstanceResetsAtOnceAndSaysSoOnce(t *testing.T) {
	targets := startGreeters(t, "a")
	lo, hi := freePortRange(t)
	np := freeInRange(t, lo, hi, 1)[0]
	var warnings atomic.Int32
	log := slog.New(countingHandler{testLogger(t).Handler(), slog.LevelWarn, &warnings})
	svc := func(ready bool) *discovery.Service {
		s := &discovery.Service{Namespace: "default", Name: "db",
			Ports: []v1.Port{{Name: "pg", Port: targets[0], Protocol: v1.ProtocolTCP, Expose: "tcp", NodePort: np}}}
		if ready {
			s.Ready = []discovery.Endpoint{{Instance: "db-0", IP: "127.0.0.1"}}
		}
		return s
	}
	src := newSource()
	p, err := New(Config{NodePortMin: lo, NodePortMax: hi, TCPBindAddress: "127.0.0.1"}, src, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- p.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-ran })
	h := &harness{p: p, src: src}
	h.waitRunning(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(np))
	for _, step := range []struct {
		name        string
		ready       bool
		connections int
		greeting    string // "" for reset at once
		warnings    int32
	}{
		{"with no instance every connection is reset, and that is said once", false, 5, "", 1},
		{"an instance that comes back takes connections", true, 2, "a", 0},
		{"losing it again is said once more", false, 3, "", 1},
	} {
		t.Run(step.name, func(t *testing.T) {
			h.publishTCP(t, svc(step.ready))
			before := warnings.Load()
			for range step.connections {
				start := time.Now()
				g, err := greeting(addr)
				if step.greeting == "" && (!errors.Is(err, syscall.ECONNRESET) || time.Since(start) > time.Second) {
					t.Fatalf("got %q, %v after %v; want the connection reset at once", g, err, time.Since(start))
				}
				if step.greeting != "" && g != step.greeting {
					t.Fatalf("greeting %q, %v; want %q", g, err, step.greeting)
				}
			}
			if got := warnings.Load() - before; got != step.warnings {
				t.Errorf("%d warnings logged, want %d", got, step.warnings)
			}
		})
	}
}

// On shutdown the node ports close at once; flows get ShutdownTimeout to
// end on their own and are then cut, so an idle one (a pooled database
// connection) cannot hold the server's stop.
func TestTCPShutdownClosesPortsAndCutsIdleFlows(t *testing.T) {
	targets := startGreeters(t, "a")
	lo, hi := freePortRange(t)
	const grace = 300 * time.Millisecond
	h := startProxy(t, Config{NodePortMin: lo, NodePortMax: hi, ShutdownTimeout: grace})
	np := freeInRange(t, lo, hi, 1)[0]
	svc := &discovery.Service{Namespace: "default", Name: "db",
		Ports: []v1.Port{{Name: "pg", Port: targets[0], Protocol: v1.ProtocolTCP, Expose: "tcp", NodePort: np}},
		Ready: []discovery.Endpoint{{Instance: "db-0", IP: "127.0.0.1"}}}
	h.publishTCP(t, svc)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(np))
	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	br := bufio.NewReader(idle)
	if g, err := br.ReadString('\n'); err != nil || g != "a\n" {
		t.Fatalf("greeting %q, %v", g, err)
	}
	start := time.Now()
	stopped := h.stop()
	for _, tc := range []struct {
		name  string
		check func() error
	}{
		{"the node port stops accepting", func() error {
			deadline := time.Now().Add(grace / 2)
			for {
				c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
				if err != nil {
					return nil
				}
				c.Close()
				if time.Now().After(deadline) {
					return fmt.Errorf("still accepting %v after shutdown began", time.Since(start))
				}
				time.Sleep(5 * time.Millisecond)
			}
		}},
		{"the idle flow is cut after the grace period", func() error {
			idle.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err := br.ReadByte()
			if err == nil || time.Since(start) > grace+2*time.Second {
				return fmt.Errorf("after %v: read %v; want the flow cut soon after %v", time.Since(start), err, grace)
			}
			return nil
		}},
		{"Serve returns", func() error {
			select {
			case <-stopped:
				return nil
			case <-time.After(5 * time.Second):
				return errors.New("Serve did not return")
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.check(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// An instance that leaves the ready set (unready, or retired in a
// rollout) gets no new connection from the next one on, while its open
// flows keep running through the drain; when it stops, its flows end and
// their clients see it at once.
func TestTCPRetiredInstanceDrains(t *testing.T) {
	port, eps := startEchoServers(t, 2)
	lo, hi := freePortRange(t)
	var np int // chosen once the proxy listens
	svc := func(ready ...discovery.Endpoint) *discovery.Service {
		return &discovery.Service{Namespace: "default", Name: "db",
			Ports: []v1.Port{{Name: "pg", Port: port, Protocol: v1.ProtocolTCP, Expose: "tcp", NodePort: np}},
			Ready: ready}
	}
	h := startProxy(t, Config{NodePortMin: lo, NodePortMax: hi})
	np = freeInRange(t, lo, hi, 1)[0]
	h.publishTCP(t, svc(eps...))
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(np))
	// Open a flow to each instance; the one to echo-0 is the flow that
	// must survive echo-0's retirement.
	var flow net.Conn
	var br *bufio.Reader
	for range 4 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(5 * time.Second))
		r := bufio.NewReader(c)
		if g, _ := r.ReadString('\n'); g == "echo-0\n" && flow == nil {
			flow, br = c, r
		}
	}
	if flow == nil {
		t.Fatal("no connection reached echo-0")
	}
	h.publishTCP(t, svc(eps[1]))
	for _, tc := range []struct {
		name  string
		check func() error
	}{
		{"new connections go to the ready instance only", func() error {
			for range 6 {
				if g, _ := talk(t, addr); g != "echo-1" {
					return fmt.Errorf("greeting %q, want echo-1", g)
				}
			}
			return nil
		}},
		{"the open flow to the retired instance keeps working", func() error {
			fmt.Fprintf(flow, "still here\n")
			if line, err := br.ReadString('\n'); err != nil || line != "STILL HERE\n" {
				return fmt.Errorf("open flow: %q, %v", line, err)
			}
			return nil
		}},
		{"when the instance ends the flow the client sees it at once", func() error {
			// The echo instance says bye and closes once its client has
			// finished: the close comes from the instance's side.
			flow.(*net.TCPConn).CloseWrite()
			start := time.Now()
			rest, err := io.ReadAll(br)
			if err != nil || string(rest) != "bye\n" || time.Since(start) > time.Second {
				return fmt.Errorf("after %v: %q, %v; want bye and the end at once", time.Since(start), rest, err)
			}
			return nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.check(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

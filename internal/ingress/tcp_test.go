package ingress

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
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
		want, _ := freePortRange(t)
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

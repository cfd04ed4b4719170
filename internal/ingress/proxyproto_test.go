package ingress

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/discovery"
)

// The headers are checked byte for byte against the examples and
// layout of HAProxy's proxy-protocol.txt.
func TestProxyHeaderEncoding(t *testing.T) {
	tcp := func(ip string, port int) net.Addr { return &net.TCPAddr{IP: net.ParseIP(ip), Port: port} }
	for _, tc := range []struct {
		name          string
		version       string
		client, local net.Addr
		want          string // v1: the text; v2: hex
	}{
		{"v1 IPv4", "v1", tcp("192.168.0.1", 56324), tcp("192.168.0.11", 443),
			"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"},
		{"v1 IPv6", "v1", tcp("2001:db8::1", 1), tcp("::1", 65535),
			"PROXY TCP6 2001:db8::1 ::1 1 65535\r\n"},
		{"v1 IPv4-mapped IPv6 is IPv4", "v1", tcp("::ffff:10.0.0.1", 40000), tcp("::ffff:10.0.0.2", 30000),
			"PROXY TCP4 10.0.0.1 10.0.0.2 40000 30000\r\n"},
		{"v1 two families", "v1", tcp("10.0.0.1", 1), tcp("::1", 2), "PROXY UNKNOWN\r\n"},
		{"v1 not TCP", "v1", &net.UnixAddr{Name: "x"}, tcp("::1", 2), "PROXY UNKNOWN\r\n"},
		{"v2 IPv4", "v2", tcp("192.168.0.1", 56324), tcp("192.168.0.11", 443),
			"0d0a0d0a000d0a515549540a" + "21" + "11" + "000c" + "c0a80001" + "c0a8000b" + "dc04" + "01bb"},
		{"v2 IPv6", "v2", tcp("2001:db8::1", 1), tcp("::1", 65535),
			"0d0a0d0a000d0a515549540a" + "21" + "21" + "0024" +
				"20010db8000000000000000000000001" + "00000000000000000000000000000001" + "0001" + "ffff"},
		{"v2 two families", "v2", tcp("10.0.0.1", 1), tcp("::1", 2),
			"0d0a0d0a000d0a515549540a" + "21" + "00" + "0000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := proxyHeader(tc.version, tc.client, tc.local)
			want := []byte(tc.want)
			if tc.version == "v2" {
				var err error
				if want, err = hex.DecodeString(tc.want); err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(got, want) {
				t.Errorf("got  %q\nwant %q", got, want)
			}
			if tc.version == "v1" && len(got) > 107 {
				t.Errorf("%d bytes; a v1 header has at most 107", len(got))
			}
		})
	}
}

// An exposed port with proxyProtocol hands each instance, ahead of the
// client's bytes, the address the client connected from and the node
// port address it connected to; switching the version on a published
// port applies to the next connection.
func TestTCPProxyProtocolTellsTheInstanceTheClient(t *testing.T) {
	// The instance reads the header (a line for v1, 16 bytes and the
	// length they give for v2), then echoes it and what follows.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	serveConns(ln, func(c net.Conn) {
		r := bufio.NewReader(c)
		head, err := r.Peek(16)
		if err != nil {
			return
		}
		var hdr []byte
		if bytes.HasPrefix(head, proxyV2Signature) {
			hdr = make([]byte, 16+int(head[14])<<8+int(head[15]))
			if _, err := io.ReadFull(r, hdr); err != nil {
				return
			}
		} else if hdr, err = r.ReadBytes('\n'); err != nil {
			return
		}
		rest, _ := r.ReadBytes('\n')
		c.Write([]byte(strconv.Itoa(len(hdr)) + "\n"))
		c.Write(hdr)
		c.Write(rest)
	})
	target := ln.Addr().(*net.TCPAddr).Port
	lo, hi := freePortRange(t)
	h := startProxy(t, Config{NodePortMin: lo, NodePortMax: hi})
	svc := func(version string) *discovery.Service {
		return &discovery.Service{Namespace: "default", Name: "pg",
			Ports: []v1.Port{{Name: "pg", Port: target, Protocol: v1.ProtocolTCP, Expose: "tcp", ProxyProtocol: version}},
			Ready: []discovery.Endpoint{{Instance: "pg-0", IP: "127.0.0.1"}}}
	}
	var np int
	for _, version := range []string{"v1", "v2", ""} {
		t.Run("proxyProtocol "+strconv.Quote(version), func(t *testing.T) {
			h.publishTCP(t, svc(version))
			port, ok := h.p.NodePort("default", "pg", "pg")
			if !ok {
				t.Fatal("not published")
			}
			if np != 0 && port != np {
				t.Fatalf("node port moved from %d to %d: the listener was replaced", np, port)
			}
			np = port
			c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(np)), 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(3 * time.Second))
			if version == "" {
				// No header: the instance's first line is the client's.
				c.Write([]byte("0123456789abcdef-hello\nbye\n"))
				got, _ := io.ReadAll(io.LimitReader(c, 100))
				if want := "23\n0123456789abcdef-hello\nbye\n"; string(got) != want {
					t.Errorf("instance got %q, want %q", got, want)
				}
				return
			}
			c.Write([]byte("hello, said the client, and this line is long\n"))
			r := bufio.NewReader(c)
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			n, _ := strconv.Atoi(line[:len(line)-1])
			got := make([]byte, n)
			if _, err := io.ReadFull(r, got); err != nil {
				t.Fatal(err)
			}
			if want := proxyHeader(version, c.LocalAddr(), c.RemoteAddr()); !bytes.Equal(got, want) {
				t.Errorf("header %q, want %q (client %s, node port %s)", got, want, c.LocalAddr(), c.RemoteAddr())
			}
			if rest, _ := r.ReadString('\n'); rest != "hello, said the client, and this line is long\n" {
				t.Errorf("after the header the instance read %q", rest)
			}
		})
	}
}

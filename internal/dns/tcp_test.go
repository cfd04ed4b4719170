package dns

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	miekg "github.com/miekg/dns"
)

// tcpQuery is q framed for TCP: its length in two bytes, then the message.
func tcpQuery(t *testing.T, q *miekg.Msg) []byte {
	t.Helper()
	b, err := q.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(b))), b...)
}

// readTCPAnswer reads one framed answer from c.
func readTCPAnswer(c net.Conn) (*miekg.Msg, error) {
	var n [2]byte
	if _, err := io.ReadFull(c, n[:]); err != nil {
		return nil, err
	}
	b := make([]byte, binary.BigEndian.Uint16(n[:]))
	if _, err := io.ReadFull(c, b); err != nil {
		return nil, err
	}
	m := new(miekg.Msg)
	return m, m.Unpack(b)
}

func TestTCPClientsCannotHoldTheServer(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"a client that stops reading its answers is cut off once a write times out", func(t *testing.T) {
			// About 60 KB per answer: 128 of them (all miekg/dns
			// serves on one connection) are more than the socket
			// buffers of both ends hold, so the server's writes block.
			s, _ := newTestServer(t, Config{}, bigSnapshot(3800))
			s.tcpWriteTimeout = 200 * time.Millisecond
			addr := serve(t, s)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			// A small receive window keeps the server's send buffer
			// from growing to hold every answer, however large the
			// host lets it grow.
			if err := c.(*net.TCPConn).SetReadBuffer(4096); err != nil {
				t.Fatal(err)
			}
			q := new(miekg.Msg)
			q.SetQuestion("big.default.svc.gantry.internal.", miekg.TypeA)
			const sent = 128
			var queries []byte
			for range sent {
				queries = append(queries, tcpQuery(t, q)...)
			}
			if _, err := c.Write(queries); err != nil {
				t.Fatal(err)
			}
			// Long enough for the server to fill the buffers and give
			// up on the write, even under the race detector.
			time.Sleep(3 * time.Second)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			got := 0
			for {
				m, err := readTCPAnswer(c)
				if err != nil {
					if errors.Is(err, os.ErrDeadlineExceeded) {
						t.Fatalf("after %d answers the connection is still open", got)
					}
					break
				}
				if len(m.Answer) != 3800 {
					t.Fatalf("answer %d has %d records, want 3800", got, len(m.Answer))
				}
				got++
			}
			t.Logf("%d of %d answers delivered before the server gave up", got, sent)
			if got >= sent {
				t.Fatalf("all %d answers were delivered to a client that did not read for 3s; the server should have given up", got)
			}
		}},
		{"connections beyond the limit wait until one closes", func(t *testing.T) {
			s, _ := newTestServer(t, Config{}, tableSnapshot())
			s.maxTCPConns = 2
			addr := serve(t, s) // waitServing's own connection has closed
			held := []net.Conn{dialTCP(t, addr), dialTCP(t, addr)}
			c := dialTCP(t, addr)
			q := new(miekg.Msg)
			q.SetQuestion("hello.default.svc.gantry.internal.", miekg.TypeA)
			if _, err := c.Write(tcpQuery(t, q)); err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			if m, err := readTCPAnswer(c); err == nil {
				t.Fatalf("a third connection was served while two were open:\n%v", m)
			}
			held[0].Close()
			c.SetReadDeadline(time.Now().Add(time.Second))
			if m, err := readTCPAnswer(c); err != nil || len(m.Answer) != 2 {
				t.Fatalf("after one closed, the waiting connection got %v, %v; want its answer", m, err)
			}
		}},
		{"one client cannot take every connection", func(t *testing.T) {
			s, _ := newTestServer(t, Config{}, tableSnapshot())
			s.maxTCPConnsPerClient = 2
			addr := serve(t, s)
			q := new(miekg.Msg)
			q.SetQuestion("hello.default.svc.gantry.internal.", miekg.TypeA)
			ask := func(c net.Conn) error {
				if _, err := c.Write(tcpQuery(t, q)); err != nil {
					return err
				}
				c.SetReadDeadline(time.Now().Add(2 * time.Second))
				_, err := readTCPAnswer(c)
				return err
			}
			// served dials until a connection is served: one just
			// closed (serve's own probe, say) counts until the server
			// has noticed.
			served := func() net.Conn {
				for deadline := time.Now().Add(5 * time.Second); ; {
					c := dialTCP(t, addr)
					err := ask(c)
					if err == nil {
						return c
					}
					c.Close()
					if time.Now().After(deadline) {
						t.Fatalf("no connection served for 5 s: %v", err)
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
			held := []net.Conn{served(), served()}
			if err := ask(dialTCP(t, addr)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("a third connection from the same client: %v; want it closed at once", err)
			}
			held[0].Close()
			served()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, tt.run)
	}
}

// dialTCP connects to addr; the connection is closed when the test ends.
func dialTCP(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

package ingress

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestSockIO(t *testing.T) {
	t.Run("a write larger than the socket buffers arrives whole", func(t *testing.T) {
		a, b := tcpPair(t)
		a.SetWriteBuffer(16 << 10)
		b.SetReadBuffer(16 << 10)
		rw := newSockIO(a)
		if _, ok := rw.(*sockIO); !ok {
			t.Fatalf("newSockIO(TCPConn) = %T, want raw I/O", rw)
		}
		want := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
		got := make(chan []byte, 1)
		go func() {
			// A slow reader, so that the writer finds the socket full.
			var buf bytes.Buffer
			chunk := make([]byte, 64<<10)
			for {
				time.Sleep(time.Millisecond)
				n, err := b.Read(chunk)
				buf.Write(chunk[:n])
				if err != nil {
					break
				}
			}
			got <- buf.Bytes()
		}()
		n, err := rw.Write(want)
		if err != nil || n != len(want) {
			t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(want))
		}
		a.CloseWrite()
		if g := <-got; !bytes.Equal(g, want) {
			t.Fatalf("peer read %d bytes, want the %d written", len(g), len(want))
		}
	})
	t.Run("reads return what came, then EOF", func(t *testing.T) {
		a, b := tcpPair(t)
		rw := newSockIO(a)
		b.Write([]byte("hello"))
		b.Close()
		got, err := io.ReadAll(rw)
		if err != nil || string(got) != "hello" {
			t.Fatalf("ReadAll = %q, %v", got, err)
		}
		if n, err := rw.Read(make([]byte, 1)); n != 0 || err != io.EOF {
			t.Fatalf("Read after EOF = %d, %v", n, err)
		}
	})
	t.Run("a read deadline ends a waiting read", func(t *testing.T) {
		a, _ := tcpPair(t)
		rw := newSockIO(a)
		a.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		_, err := rw.Read(make([]byte, 8))
		var ne net.Error
		if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("Read past the deadline = %v, want a timeout", err)
		}
	})
	t.Run("a deadline set while a read waits cuts it short", func(t *testing.T) {
		a, _ := tcpPair(t)
		rw := newSockIO(a)
		go func() {
			time.Sleep(20 * time.Millisecond)
			a.SetReadDeadline(aLongTimeAgo)
		}()
		if _, err := rw.Read(make([]byte, 8)); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Read = %v, want it cut by the deadline", err)
		}
	})
	t.Run("writing to a reset connection fails with the errno, without a signal", func(t *testing.T) {
		a, b := tcpPair(t)
		rw := newSockIO(a)
		b.SetLinger(0)
		b.Close() // RST
		var err error
		for i := 0; i < 100 && err == nil; i++ {
			_, err = rw.Write([]byte("x"))
			time.Sleep(time.Millisecond)
		}
		var oe *net.OpError
		if !errors.As(err, &oe) || !(errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)) {
			t.Fatalf("Write to a reset connection = %v, want EPIPE or ECONNRESET in a *net.OpError", err)
		}
	})
	t.Run("a closed connection is net.ErrClosed", func(t *testing.T) {
		a, _ := tcpPair(t)
		rw := newSockIO(a)
		a.Close()
		if _, err := rw.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read = %v", err)
		}
		if _, err := rw.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Write = %v", err)
		}
	})
	t.Run("one goroutine reads while another writes", func(t *testing.T) {
		a, b := tcpPair(t)
		rw := newSockIO(a)
		go io.Copy(b, b) // echo
		const n = 2000
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < n; i++ {
				if _, err := rw.Write([]byte("ping")); err != nil {
					t.Error(err)
					return
				}
			}
		}()
		got, err := io.ReadAll(io.LimitReader(rw, 4*n))
		wg.Wait()
		if err != nil || !bytes.Equal(got, bytes.Repeat([]byte("ping"), n)) {
			t.Fatalf("echo: %d bytes, %v", len(got), err)
		}
	})
	t.Run("quiet: nothing to read, then data, then the peer's close", func(t *testing.T) {
		a, b := tcpPair(t)
		s := newSockIO(a).(*sockIO)
		if !s.quiet() {
			t.Fatal("an idle connection is not quiet")
		}
		b.Write([]byte("x"))
		waitFor(t, func() bool { return !s.quiet() }, "data to make it not quiet")
		buf := make([]byte, 1)
		if n, err := s.Read(buf); n != 1 || err != nil {
			t.Fatalf("the peeked byte was consumed: %d %v", n, err)
		}
		if !s.quiet() {
			t.Fatal("quiet again once the data was read")
		}
		b.Close()
		waitFor(t, func() bool { return !s.quiet() }, "the close to make it not quiet")
		a.Close()
		if s.quiet() {
			t.Fatal("a closed connection is quiet")
		}
	})
	t.Run("anything but a TCP connection is used as it is", func(t *testing.T) {
		p, q := net.Pipe()
		defer p.Close()
		defer q.Close()
		if rw := newSockIO(p); rw != io.ReadWriter(p) {
			t.Fatalf("newSockIO(pipe) = %T", rw)
		}
	})
}

// waitFor polls cond for up to a second; loopback delivery is not
// instant.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	for deadline := time.Now().Add(time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("waited a second for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

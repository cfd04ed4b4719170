package dns

import (
	"net"
	"sync"
	"time"
)

// A TCP client holds a socket and a goroutine of ours for as long as its
// connection lasts. miekg/dns bounds how long a connection may wait for
// its next query, but not how long writing an answer may take (its
// Server.WriteTimeout is never applied), nor how many connections there
// are: a client that sends queries and never reads the answers would pin
// a goroutine in Write for good, and enough of them would exhaust the
// process's file descriptors, which the rest of Gantry shares.
const (
	// defaultTCPWriteTimeout bounds writing one answer: a client that
	// does not take 64 KiB in this time is not going to.
	defaultTCPWriteTimeout = 5 * time.Second
	// defaultMaxTCPConns bounds the TCP connections served at once per
	// listener. TCP is the fallback for the few answers that do not fit
	// a datagram, so this is far above what clients need.
	defaultMaxTCPConns = 1024
)

// tcpListener hands out connections whose writes time out, and at most
// cap(slots) of them at a time: Accept waits for one to close, leaving
// new clients in the kernel's backlog meanwhile.
type tcpListener struct {
	net.Listener
	writeTimeout time.Duration
	slots        chan struct{}
	done         chan struct{}
	closeOnce    sync.Once
}

func newTCPListener(ln net.Listener, writeTimeout time.Duration, maxConns int) *tcpListener {
	return &tcpListener{
		Listener:     ln,
		writeTimeout: writeTimeout,
		slots:        make(chan struct{}, maxConns),
		done:         make(chan struct{}),
	}
}

func (l *tcpListener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &tcpConn{Conn: c, l: l}, nil
}

// Close also ends an Accept that waits for a free slot.
func (l *tcpListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type tcpConn struct {
	net.Conn
	l       *tcpListener
	release sync.Once
}

// Write gives each answer its own deadline: the read deadlines miekg/dns
// sets say nothing about a peer that stopped reading.
func (c *tcpConn) Write(b []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.l.writeTimeout)); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}

func (c *tcpConn) Close() error {
	err := c.Conn.Close()
	c.release.Do(func() { <-c.l.slots })
	return err
}

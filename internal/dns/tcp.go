package dns

import (
	"net"
	"net/netip"
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
	// defaultMaxTCPConnsPerClient bounds them per client address, so
	// that one client (a container, say) cannot take every slot from
	// the others by keeping connections busy. A stub resolver opens one
	// or two at a time.
	defaultMaxTCPConnsPerClient = 32
)

// tcpListener hands out connections whose writes time out, and at most
// cap(slots) of them at a time: Accept waits for one to close, leaving
// new clients in the kernel's backlog meanwhile. A client address with
// perClient connections open has further ones closed at once.
type tcpListener struct {
	net.Listener
	writeTimeout time.Duration
	slots        chan struct{}
	done         chan struct{}
	closeOnce    sync.Once

	perClient int
	mu        sync.Mutex
	clients   map[netip.Addr]int
}

func newTCPListener(ln net.Listener, writeTimeout time.Duration, maxConns, perClient int) *tcpListener {
	return &tcpListener{
		Listener:     ln,
		writeTimeout: writeTimeout,
		slots:        make(chan struct{}, maxConns),
		done:         make(chan struct{}),
		perClient:    perClient,
		clients:      map[netip.Addr]int{},
	}
}

func (l *tcpListener) Accept() (net.Conn, error) {
	for {
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
		ip := clientAddr(c)
		if !l.admit(ip) {
			c.Close()
			<-l.slots
			continue
		}
		return &tcpConn{Conn: c, l: l, ip: ip}, nil
	}
}

// clientAddr is the address a connection came from (the zero Addr if
// it is not an IP connection, which then all count as one client).
func clientAddr(c net.Conn) netip.Addr {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// admit counts a connection from ip, unless ip has perClient open.
func (l *tcpListener) admit(ip netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.clients[ip] >= l.perClient {
		return false
	}
	l.clients[ip]++
	return true
}

func (l *tcpListener) release(ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.clients[ip]--; l.clients[ip] <= 0 {
		delete(l.clients, ip)
	}
}

// Close also ends an Accept that waits for a free slot.
func (l *tcpListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type tcpConn struct {
	net.Conn
	l       *tcpListener
	ip      netip.Addr
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
	c.release.Do(func() {
		c.l.release(c.ip)
		<-c.l.slots
	})
	return err
}

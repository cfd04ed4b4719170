package ingress

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sockIO reads and writes a TCP connection with raw system calls, inside
// syscall.RawConn's Read and Write so that the runtime's poller still
// waits for readiness and deadlines still apply.
//
// net.Conn's Read and Write enter every system call through the
// scheduler's syscall path, which wakes the runtime's monitor thread
// whenever it had gone to sleep for lack of work. At a few thousand
// requests a second, with gaps between them, that is about one extra
// thread wake-up per system call: measured on a two-vCPU VM, a fifth of
// the proxy's CPU went to the monitor's sleeps and wake-ups. A read or
// write on a non-blocking socket returns at once, so it needs none of
// that; the raw call skips it.
//
// Reads and writes keep separate state, so one goroutine may read while
// another writes, as with a net.Conn; two reads (or two writes) at once
// would share state and are not allowed, which no caller needs.
type sockIO struct {
	rc syscall.RawConn

	rp    []byte
	rn    int
	rerr  syscall.Errno
	read  func(uintptr) bool
	wp    []byte
	wn    int
	werr  syscall.Errno
	write func(uintptr) bool

	pbuf   [1]byte
	pquiet bool
	peek   func(uintptr) bool
}

// newSockIO returns raw I/O for c, or c itself when it is not a plain
// socket (TLS, or a wrapper in tests).
func newSockIO(c net.Conn) io.ReadWriter {
	if _, ok := c.(*net.TCPConn); !ok {
		return c
	}
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		return c
	}
	s := &sockIO{rc: rc}
	s.read, s.write, s.peek = s.doRead, s.doWrite, s.doPeek
	return s
}

// quiet reports whether nothing waits to be read: no data and no end of
// stream. It must not run beside a Read.
func (s *sockIO) quiet() bool {
	s.pquiet = false
	if err := s.rc.Read(s.peek); err != nil {
		return false
	}
	return s.pquiet
}

func (s *sockIO) doPeek(fd uintptr) bool {
	for {
		_, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&s.pbuf[0])), 1,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		if e != syscall.EINTR {
			s.pquiet = e == syscall.EAGAIN
			return true
		}
	}
}

func (s *sockIO) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	s.rp, s.rn, s.rerr = p, 0, 0
	err := s.rc.Read(s.read)
	s.rp = nil
	switch {
	case err != nil:
		return 0, err
	case s.rerr != 0:
		return 0, &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", s.rerr)}
	case s.rn == 0:
		return 0, io.EOF
	}
	return s.rn, nil
}

func (s *sockIO) doRead(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&s.rp[0])), uintptr(len(s.rp)))
		switch e {
		case 0:
			s.rn = int(n)
			return true
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			s.rerr = e
			return true
		}
	}
}

func (s *sockIO) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	s.wp, s.wn, s.werr = p, 0, 0
	err := s.rc.Write(s.write)
	s.wp = nil
	switch {
	case err != nil:
		return s.wn, err
	case s.werr != 0:
		return s.wn, &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", s.werr)}
	}
	return s.wn, nil
}

// doWrite writes until all is written or the socket is full; MSG_NOSIGNAL
// turns a write to a closed connection into EPIPE without a signal.
func (s *sockIO) doWrite(fd uintptr) bool {
	for s.wn < len(s.wp) {
		n, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&s.wp[s.wn])), uintptr(len(s.wp)-s.wn), syscall.MSG_NOSIGNAL, 0, 0)
		switch e {
		case 0:
			s.wn += int(n)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			s.werr = e
			return true
		}
	}
	return true
}

// tcpCounters are the bytes a TCP connection has received and the bytes
// it sent that its peer acknowledged, as the kernel counts them
// (TCP_INFO, Linux 4.1 and later). ok is false for other connections.
func tcpCounters(c net.Conn) (received, acked uint64, ok bool) {
	sc, isSC := c.(syscall.Conn)
	if !isSC {
		return 0, 0, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, 0, false
	}
	var info *unix.TCPInfo
	var ierr error
	if err := rc.Control(func(fd uintptr) {
		info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); err != nil || ierr != nil {
		return 0, 0, false
	}
	return info.Bytes_received, info.Bytes_acked, true
}

package loadgen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The event-loop client (Config.EventLoop) sends every request from one
// OS thread that sleeps in epoll_wait and is woken by a timerfd when the
// next request is due. The goroutine client wakes a goroutine per
// request through the Go scheduler, whose timers can fire up to a
// millisecond late (the runtime's netpoller sleeps in whole
// milliseconds), and which costs tens of microseconds of CPU per request
// in futex and epoll traffic at a few thousand requests a second. Here a
// request costs a handful of system calls and is sent within tens of
// microseconds of its due time, which matters when the generator shares
// two CPUs with the proxy and the backend it measures.

// evConn is one keep-alive connection of the event loop.
type evConn struct {
	fd       int
	ready    bool // connected
	answered bool // has answered a request: a failure may be a stale connection
	busy     bool // has a request
	job      job
	deadline time.Time
	written  int // bytes of the request written
	events   uint32
	p        respParser
}

type evLoop struct {
	r      *Run
	ep     int // epoll
	timer  int // timerfd: the next due request
	wake   int // eventfd: Stop or the context
	sa     unix.Sockaddr
	family int
	conns  map[int]*evConn
	idle   []*evConn
	open   int // connections, idle or not
	busy   int
	queue  []job // due requests waiting for a connection
	armed  time.Time
	rbuf   []byte
}

// startEventLoop checks what the event loop supports and starts it.
func (r *Run) startEventLoop(ctx context.Context) error {
	switch {
	case r.tlsConf != nil:
		return errors.New("loadgen: EventLoop speaks plain http only")
	case r.cfg.Marker != nil:
		return errors.New("loadgen: EventLoop cannot call Marker; use MarkerHeader")
	}
	addr, err := net.ResolveTCPAddr("tcp", r.addr)
	if err != nil {
		return fmt.Errorf("loadgen: %w", err)
	}
	l := &evLoop{r: r, conns: map[int]*evConn{}, rbuf: make([]byte, 64<<10)}
	if ip4 := addr.IP.To4(); ip4 != nil {
		sa := &unix.SockaddrInet4{Port: addr.Port}
		copy(sa.Addr[:], ip4)
		l.sa, l.family = sa, unix.AF_INET
	} else {
		sa := &unix.SockaddrInet6{Port: addr.Port}
		copy(sa.Addr[:], addr.IP.To16())
		l.sa, l.family = sa, unix.AF_INET6
	}
	if l.ep, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return fmt.Errorf("loadgen: epoll: %w", err)
	}
	if l.timer, err = unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC); err != nil {
		unix.Close(l.ep)
		return fmt.Errorf("loadgen: timerfd: %w", err)
	}
	if l.wake, err = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC); err != nil {
		unix.Close(l.ep)
		unix.Close(l.timer)
		return fmt.Errorf("loadgen: eventfd: %w", err)
	}
	for _, fd := range []int{l.timer, l.wake} {
		if err := unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}); err != nil {
			l.closeAll()
			return fmt.Errorf("loadgen: epoll_ctl: %w", err)
		}
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-r.stop:
		case <-ctx.Done():
		case <-done:
			return
		}
		var one [8]byte
		one[0] = 1
		unix.Write(l.wake, one[:])
	}()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer close(r.sched)
		defer close(done)
		l.run()
	}()
	return nil
}

func (l *evLoop) closeAll() {
	for fd := range l.conns {
		unix.Close(fd)
	}
	unix.Close(l.ep)
	unix.Close(l.timer)
	unix.Close(l.wake)
}

func (l *evLoop) run() {
	// The thread is this loop's alone, and it is never handed back: it
	// ends with the goroutine, taking its timer slack setting with it.
	runtime.LockOSThread()
	unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0)
	defer l.closeAll()
	r := l.r
	events := make([]unix.EpollEvent, 128)
	next, scheduled, stopped := 0, true, false
	lastScan := time.Now()
	for {
		now := time.Now()
		if now.Sub(lastScan) >= 5*time.Millisecond {
			l.expire(now)
			lastScan = now
		}
		// Every request that is due joins the queue, and the queue goes
		// out on free connections.
		for scheduled && !stopped {
			due, ok := r.dueAt(next)
			if !ok {
				scheduled = false
				break
			}
			if due.After(now) {
				l.arm(due, now)
				break
			}
			l.queue = append(l.queue, job{seq: next, due: due})
			next++
		}
		for len(l.queue) > 0 {
			c, err := l.free()
			if c == nil && err == nil {
				break
			}
			j := l.queue[0]
			l.queue = l.queue[1:]
			if !j.retry {
				// It goes out now; a retry keeps the time it first did.
				j.sent = now
				l.r.inflight.Add(1)
			}
			if err != nil {
				l.r.inflight.Add(-1)
				l.r.record(Result{Seq: j.seq, Due: j.due, Lag: j.sent.Sub(j.due), Latency: now.Sub(j.due), Err: Reason(err), Retried: j.retry})
				continue
			}
			l.assign(c, j)
		}
		if (!scheduled || stopped) && len(l.queue) == 0 && l.busy == 0 {
			return
		}
		wait := -1
		if l.busy > 0 || len(l.queue) > 0 {
			wait = 10 // for timeouts and for connections to dial again
		}
		n, err := unix.EpollWait(l.ep, events, wait)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			l.failAll("epoll_wait: " + err.Error())
			return
		}
		for _, ev := range events[:n] {
			fd := int(ev.Fd)
			switch fd {
			case l.timer:
				var b [8]byte
				unix.Read(l.timer, b[:])
				l.armed = time.Time{}
			case l.wake:
				// Read it, or epoll reports it again at once while the
				// requests in flight finish.
				var b [8]byte
				unix.Read(l.wake, b[:])
				stopped = true
			default:
				if c := l.conns[fd]; c != nil {
					l.event(c, ev.Events)
				}
			}
		}
	}
}

// arm sets the timer for due unless it is already set for then.
func (l *evLoop) arm(due, now time.Time) {
	if l.armed.Equal(due) {
		return
	}
	d := due.Sub(now)
	if d <= 0 {
		d = 1 // zero would disarm it
	}
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(int64(d))}
	if err := unix.TimerfdSettime(l.timer, 0, &spec, nil); err == nil {
		l.armed = due
	}
}

// free returns an idle connection, a new one while there are fewer than
// Config.Connections, or neither when all are busy. A connection that
// cannot even be started is an error for the request that wanted it.
func (l *evLoop) free() (*evConn, error) {
	if n := len(l.idle); n > 0 {
		c := l.idle[n-1]
		l.idle = l.idle[:n-1]
		return c, nil
	}
	if l.open >= l.r.cfg.Connections {
		return nil, nil
	}
	return l.dial()
}

func (l *evLoop) dial() (*evConn, error) {
	fd, err := unix.Socket(l.family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	c := &evConn{fd: fd, ready: true}
	if err := unix.Connect(fd, l.sa); err != nil {
		if err != unix.EINPROGRESS {
			unix.Close(fd)
			return nil, os.NewSyscallError("connect", err)
		}
		c.ready = false
	}
	c.events = unix.EPOLLIN | unix.EPOLLRDHUP
	if !c.ready {
		c.events |= unix.EPOLLOUT
	}
	if err := unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: c.events, Fd: int32(fd)}); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	l.conns[fd] = c
	l.open++
	return c, nil
}

// assign gives j to c.
func (l *evLoop) assign(c *evConn, j job) {
	l.busy++
	c.busy, c.job, c.written = true, j, 0
	c.deadline = j.sent.Add(l.r.cfg.Timeout)
	c.p.reset(l.r.cfg.Method == "HEAD", l.r.cfg.MarkerHeader)
	if c.ready {
		l.write(c)
	}
}

// write sends what is left of the request, and asks epoll for room when
// the socket has none.
func (l *evLoop) write(c *evConn) {
	req := l.r.reqBytes
	for c.written < len(req) {
		n, err := unix.Write(c.fd, req[c.written:])
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			l.want(c, unix.EPOLLOUT)
			return
		case err != nil:
			l.fail(c, os.NewSyscallError("write", err))
			return
		}
		c.written += n
	}
	l.want(c, 0)
}

// want sets the events c waits for: input always, and out.
func (l *evLoop) want(c *evConn, out uint32) {
	events := unix.EPOLLIN | unix.EPOLLRDHUP | out
	if c.events == events {
		return
	}
	if err := unix.EpollCtl(l.ep, unix.EPOLL_CTL_MOD, c.fd, &unix.EpollEvent{Events: events, Fd: int32(c.fd)}); err != nil {
		l.fail(c, os.NewSyscallError("epoll_ctl", err))
		return
	}
	c.events = events
}

func (l *evLoop) event(c *evConn, events uint32) {
	if !c.ready {
		if events&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) == 0 {
			return
		}
		if soerr, err := unix.GetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil || soerr != 0 {
			if err == nil {
				err = syscall.Errno(soerr)
			}
			l.fail(c, os.NewSyscallError("connect", err))
			return
		}
		c.ready = true
		if c.busy {
			l.write(c)
		} else {
			l.want(c, 0)
		}
		return
	}
	if events&unix.EPOLLOUT != 0 && c.busy && c.written < len(l.r.reqBytes) {
		l.write(c)
	}
	if c.fd >= 0 && events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
		l.read(c)
	}
}

// read takes one read's worth of the response; epoll reports the
// connection again if more is waiting.
func (l *evLoop) read(c *evConn) {
	n, err := unix.Read(c.fd, l.rbuf)
	if err == unix.EAGAIN || err == unix.EINTR {
		return
	}
	if err != nil {
		l.fail(c, os.NewSyscallError("read", err))
		return
	}
	if !c.busy {
		// An idle connection the server closed, or sent bytes nobody
		// asked for: it cannot carry another request.
		l.drop(c)
		return
	}
	if n == 0 {
		if err := c.p.eof(); err != nil {
			l.fail(c, err)
			return
		}
		l.complete(c, true)
		return
	}
	used, done, err := c.p.feed(l.rbuf[:n])
	if err != nil {
		l.fail(c, fmt.Errorf("bad response: %w", err))
		return
	}
	if done {
		// Bytes beyond the response were not asked for either.
		l.complete(c, c.p.close || used < n)
	}
}

// complete records the answer c received.
func (l *evLoop) complete(c *evConn, closeAfter bool) {
	res := Result{Seq: c.job.seq, Due: c.job.due, Lag: c.job.sent.Sub(c.job.due), Status: c.p.status, Bytes: c.p.body, Marker: c.p.value,
		Retried: c.job.retry}
	res.Latency = time.Since(c.job.due)
	if !l.r.okFn(res.Status) {
		res.Err = fmt.Sprintf("status %d", res.Status)
	}
	l.finish(c, res)
	c.answered = true
	if closeAfter {
		l.drop(c)
	} else {
		l.idle = append(l.idle, c)
	}
}

func (l *evLoop) finish(c *evConn, res Result) {
	c.busy = false
	l.busy--
	l.r.inflight.Add(-1)
	l.r.record(res)
}

// fail ends c after err. Its request, if any, goes out once more on a
// new connection when c had answered before and died before a byte of
// this answer (a keep-alive connection the server closed while idle, as
// net/http and browsers do); otherwise it fails with err. The retry
// waits in the queue so that no connection is made while a batch of
// epoll events, which may name c's file descriptor, is being handled.
func (l *evLoop) fail(c *evConn, err error) {
	busy, j, started := c.busy, c.job, c.p.started()
	stale := c.answered && !j.retry && !j.final && !started && staleConn(err) && idempotent(l.r.cfg.Method)
	if busy {
		c.busy = false
		l.busy--
	}
	l.drop(c)
	if !busy {
		return
	}
	if stale {
		j.retry = true
		l.queue = append([]job{j}, l.queue...)
		return
	}
	l.r.inflight.Add(-1)
	l.r.record(Result{Seq: j.seq, Due: j.due, Lag: j.sent.Sub(j.due), Latency: time.Since(j.due), Err: Reason(err), Retried: j.retry})
}

// drop closes c.
func (l *evLoop) drop(c *evConn) {
	if c.fd < 0 {
		return
	}
	delete(l.conns, c.fd)
	unix.Close(c.fd)
	c.fd = -1
	l.open--
	for i, ic := range l.idle {
		if ic == c {
			l.idle = append(l.idle[:i], l.idle[i+1:]...)
			break
		}
	}
}

// expire fails the requests that have run past Config.Timeout.
func (l *evLoop) expire(now time.Time) {
	for _, c := range l.conns {
		if c.busy && now.After(c.deadline) {
			l.fail(c, os.ErrDeadlineExceeded)
		}
	}
}

// failAll ends every request in flight or queued, when the loop itself
// cannot go on.
func (l *evLoop) failAll(reason string) {
	for _, c := range l.conns {
		if c.busy {
			c.job.final = true
			l.fail(c, errors.New(reason))
		}
	}
	for _, j := range l.queue {
		if j.retry {
			l.r.inflight.Add(-1)
		}
		l.r.record(Result{Seq: j.seq, Due: j.due, Latency: time.Since(j.due), Err: reason, Retried: j.retry})
	}
	l.queue = nil
}

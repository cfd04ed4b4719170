package ingress

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// The front serves plain HTTP/1.x connections itself for as long as they
// carry only requests the fast path can proxy: no body, no upgrade, no
// Expect, a head that fits its buffer. The first request it cannot take
// hands the whole connection, that request included, to net/http, which
// serves it from then on. Parsing is net/http's (http.ReadRequest), or
// for plain heads parseSimpleRequest, which reads a subset of what
// http.ReadRequest accepts to the same request; the checks net/http's
// server adds are applied to both. What the front saves is the server's
// per-request machinery (a context, a background reader goroutine, a
// response object), about a third of the CPU a proxied request costs.
//
// Front requests carry no cancellation: a client that goes away while the
// instance is still working is noticed by a clientWatch once the request
// has run for watchAfter, and the upstream exchange is cut then.

const (
	frontBufSize      = 8 << 10 // a longer request head goes to net/http
	readHeaderTimeout = 10 * time.Second
)

// handoffListener feeds connections the front gives up to net/http.
type handoffListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newHandoffListener(addr net.Addr) *handoffListener {
	return &handoffListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }

func (l *handoffListener) handoff(c net.Conn) {
	select {
	case l.ch <- c:
	case <-l.done:
		c.Close()
	}
}

// replayConn gives net/http the bytes the front had buffered but not
// consumed before reading on from the connection; and a tunnel the bytes
// net/http had buffered (recorder.Hijack).
type replayConn struct {
	net.Conn
	pending []byte
}

func (c *replayConn) Read(b []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(b, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

// CloseWrite half-closes the connection beneath. net/http does that
// before closing a connection after an error answer (400, 431), then
// waits a moment, so that a client still sending reads the answer rather
// than the reset its unread bytes cause.
func (c *replayConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return fmt.Errorf("half close on %T: %w", c.Conn, errors.ErrUnsupported)
}

// front accepts plain connections and serves them.
type front struct {
	p       *Proxy
	ln      net.Listener
	handoff *handoffListener

	mu       sync.Mutex
	conns    map[net.Conn]*connState
	closing  atomic.Bool // set under mu
	wg       sync.WaitGroup
	shutdown chan struct{}
}

// connState is what shutdown needs to know of a connection. A connection
// marks itself idle, then checks closing; shutdown sets closing, then
// looks for idle connections: one of the two sees the other, without a
// lock on the request path.
type connState struct {
	idle  atomic.Bool // waiting for a request
	watch *clientWatch
}

func newFront(p *Proxy, ln net.Listener) *front {
	return &front{p: p, ln: ln, handoff: newHandoffListener(ln.Addr()), conns: map[net.Conn]*connState{}, shutdown: make(chan struct{})}
}

// serve accepts until the listener closes.
func (f *front) serve() error {
	var backoff time.Duration
	for {
		c, err := f.ln.Accept()
		if err != nil {
			select {
			case <-f.shutdown:
				return nil
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			f.p.log.Warn("ingress accept failed", "err", err)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		cs := f.track(c)
		if cs == nil {
			c.Close()
			continue
		}
		f.wg.Add(1)
		go f.serveConn(c, cs)
	}
}

// track registers c; nil means the front is shutting down.
func (f *front) track(c net.Conn) *connState {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closing.Load() {
		return nil
	}
	cs := &connState{}
	f.conns[c] = cs
	return cs
}

func (f *front) untrack(c net.Conn) {
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
}

// close stops accepting, wakes idle connections so they close, and waits
// for busy ones to finish their response, until ctx-like deadline.
func (f *front) close(deadline time.Time) {
	f.mu.Lock()
	f.closing.Store(true)
	close(f.shutdown)
	for c, cs := range f.conns {
		if cs.idle.Load() {
			c.SetReadDeadline(aLongTimeAgo)
		}
	}
	f.mu.Unlock()
	f.ln.Close()
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-time.After(time.Until(deadline)):
	}
	// Cut what is left, upstream exchanges included: a request blocked on
	// its instance does not notice its client connection closing.
	f.mu.Lock()
	for c, cs := range f.conns {
		c.Close()
		if cs.watch != nil {
			cs.watch.abort()
		}
	}
	f.mu.Unlock()
	<-done
}

var frontReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, frontBufSize) }}
var frontWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}

// headParser parses a request head held in a byte slice.
type headParser struct {
	src bytes.Reader
	br  *bufio.Reader
}

var headParsers = sync.Pool{New: func() any {
	hp := &headParser{}
	hp.br = bufio.NewReaderSize(&hp.src, 512)
	return hp
}}

func (f *front) serveConn(c net.Conn, cs *connState) {
	defer f.wg.Done()
	rw := newSockIO(c)
	br := frontReaders.Get().(*bufio.Reader)
	br.Reset(rw)
	bw := frontWriters.Get().(*bufio.Writer)
	bw.Reset(rw)
	handedOff := false
	defer func() {
		f.untrack(c)
		if !handedOff {
			// What bw still holds (an answer the connection ends
			// behind) goes out first, whatever ends the connection.
			flushPending(c, bw)
			c.Close()
		}
		br.Reset(nil)
		frontReaders.Put(br)
		bw.Reset(nil)
		frontWriters.Put(bw)
	}()
	remote := c.RemoteAddr().String()
	idleTimeout := f.p.cfg.ClientIdleTimeout
	watch := newClientWatch(c, br)
	defer watch.timer.Stop()
	f.mu.Lock()
	cs.watch = watch
	f.mu.Unlock()
	fw := &frontWriter{bw: bw, h: make(http.Header, 8), watch: watch, c: c, sendSlack: sendSlack(f.p.cfg.ClientSendTimeout), closing: &f.closing}
	// idleDeadline is the read deadline on c while it is the idle one, or
	// zero once something else set c's deadline. Setting a deadline costs
	// a runtime timer update, so it is moved only when less than a full
	// idle timeout is left: a connection closes after between
	// idleTimeout and idleTimeout+idleSlack without a request.
	var idleDeadline time.Time
	idleSlack := min(idleTimeout/16, time.Second)
	for {
		if br.Buffered() == 0 {
			// The deadline before the idle mark: shutdown cuts idle reads
			// short with a deadline of its own, which must win.
			if now := time.Now(); idleDeadline.Sub(now) < idleTimeout {
				idleDeadline = now.Add(idleTimeout + idleSlack)
				c.SetReadDeadline(idleDeadline)
			}
			cs.idle.Store(true)
			if f.closing.Load() {
				return
			}
			_, err := br.Peek(1)
			cs.idle.Store(false)
			if err != nil {
				return
			}
		}
		// The header timeout runs from the first byte of a head; most
		// heads arrive whole, and then there is nothing left to time.
		if buf, _ := br.Peek(br.Buffered()); headEnd(buf) < 0 {
			c.SetReadDeadline(time.Now().Add(readHeaderTimeout))
			idleDeadline = time.Time{}
		}
		n, err := headLength(br)
		if err != nil {
			return
		}
		var req *http.Request
		var head []byte
		if n > 0 {
			head, _ = br.Peek(n)
			req = parseHead(head)
		}
		eligible := req != nil && frontEligible(req, head)
		// Go's reader drops Transfer-Encoding from an HTTP/1.0 request,
		// so such a request can look eligible: its head is read too.
		if !eligible || !req.ProtoAtLeast(1, 1) {
			if why := badFraming(head); why != "" {
				// RFC 9112 6.1: a request with both Content-Length and
				// Transfer-Encoding, or an HTTP/1.0 one with
				// Transfer-Encoding, is a smuggling attempt or a broken
				// client. net/http would read the first as chunked, and
				// ignore the field of the second (so read its body as
				// the next request), and keep the connection; a proxy
				// in front of us may have framed it otherwise. Refuse
				// it, and close.
				if flushPending(c, bw) {
					writeFrontRefusal(c, why)
				}
				f.p.log.Debug("refused a badly framed request", "remote", remote, "why", why)
				return
			}
		}
		if !eligible {
			// Everything net/http should see: the head has only been
			// peeked, so the replay starts at this request.
			pending, _ := br.Peek(br.Buffered())
			if !flushPending(c, bw) {
				return
			}
			if !fw.sendBy.IsZero() {
				// net/http bounds its writes itself.
				c.SetWriteDeadline(time.Time{})
			}
			handedOff = true
			f.untrack(c)
			f.handoff.handoff(&replayConn{Conn: c, pending: bytes.Clone(pending)})
			return
		}
		br.Discard(n)
		req.RemoteAddr = remote
		fw.reset(req)
		watch.arm()
		ok := f.serveOne(fw, req)
		gone, watched := watch.disarm()
		if watched {
			idleDeadline = time.Time{} // the watch cleared it
		}
		if gone || !ok || fw.err != nil {
			return
		}
		fw.finish()
		if fw.closeAfter || fw.err != nil {
			bw.Flush()
			return
		}
		// Each answer goes out whole before the next request is read:
		// a pipelined request behind it may wait on its instance, or
		// on the rest of its head, for as long as it takes, and must
		// not hold back an answer that is ready (as net/http does).
		if bw.Flush() != nil {
			return
		}
	}
}

// badFraming says what is wrong with the framing of a request head, or ""
// if nothing is: both a Content-Length and a Transfer-Encoding field, or a
// Transfer-Encoding field in a request older than HTTP/1.1 (RFC 9112 6.1).
// Lines may end in a bare LF, as textproto, and so net/http, take them.
func badFraming(head []byte) string {
	line, rest, ok := cutLine(head)
	if !ok {
		return ""
	}
	old := bytes.HasSuffix(line, []byte(" HTTP/1.0")) || bytes.HasSuffix(line, []byte(" HTTP/0.9"))
	cl, te := false, false
	for ok {
		if line, rest, ok = cutLine(rest); !ok || len(line) == 0 {
			break
		}
		name, _, found := bytes.Cut(line, []byte(":"))
		if !found {
			continue
		}
		cl = cl || asciiEqualFold(name, "Content-Length")
		te = te || asciiEqualFold(name, "Transfer-Encoding")
	}
	switch {
	case cl && te:
		return "the request gives both Content-Length and Transfer-Encoding: send one of them"
	case te && old:
		return "an HTTP/1.0 request cannot use Transfer-Encoding: give its body a Content-Length, or send HTTP/1.1"
	}
	return ""
}

// cutLine cuts the first line off b, ended by LF or CRLF.
func cutLine(b []byte) (line, rest []byte, ok bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return nil, nil, false
	}
	return bytes.TrimSuffix(b[:i], []byte("\r")), b[i+1:], true
}

// writeFrontRefusal answers 400 with msg, on a connection that closes
// after it. The request's body is still coming: closing with it unread
// would make the kernel reset the connection, and the client might never
// read the answer. So the answer is followed by a half-close, and what
// the client still sends is read and dropped for a moment first, as
// net/http does.
func writeFrontRefusal(c net.Conn, msg string) {
	b, _ := json.Marshal(errorBody{Code: http.StatusBadRequest, Reason: "BadRequest", Message: msg})
	b = append(b, '\n')
	c.SetWriteDeadline(time.Now().Add(pendingFlushTimeout))
	if _, err := fmt.Fprintf(c, "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: %d\r\nX-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n%s", len(b), b); err != nil {
		return
	}
	if hc, ok := c.(interface{ CloseWrite() error }); ok && hc.CloseWrite() == nil {
		c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		io.CopyN(io.Discard, c, 256<<10)
	}
}

// pendingFlushTimeout bounds the last write of what the front holds for a
// client when a connection ends or changes hands, so that a client that
// stopped reading cannot hold it.
const pendingFlushTimeout = 10 * time.Second

// flushPending writes what bw holds for the client and reports whether
// that succeeded.
func flushPending(c net.Conn, bw *bufio.Writer) bool {
	if bw.Buffered() == 0 {
		return true
	}
	c.SetWriteDeadline(time.Now().Add(pendingFlushTimeout))
	err := bw.Flush()
	c.SetWriteDeadline(time.Time{})
	return err == nil
}

// serveOne runs the proxy for one request; false means the response was
// aborted and the connection must close.
func (f *front) serveOne(fw *frontWriter, req *http.Request) (ok bool) {
	defer func() {
		if v := recover(); v != nil {
			if v != http.ErrAbortHandler {
				f.p.log.Error("panic serving request", "panic", v, "host", req.Host, "path", req.URL.Path)
			}
			ok = false
		}
	}()
	f.p.ServeHTTP(fw, req)
	return true
}

// headLength waits until br holds a whole request head and returns its
// length, or 0 if the head does not fit the buffer.
func headLength(br *bufio.Reader) (int, error) {
	for {
		buf, _ := br.Peek(br.Buffered())
		if n := headEnd(buf); n > 0 {
			return n, nil
		}
		if len(buf) == br.Size() {
			return 0, nil
		}
		if _, err := br.Peek(len(buf) + 1); err != nil {
			if len(buf) > 0 && errors.Is(err, bufio.ErrBufferFull) {
				return 0, nil
			}
			return 0, err
		}
	}
}

// headEnd returns the length of the request head at the start of buf, or
// -1 if buf holds no whole head. A head ends at an empty line; textproto
// accepts bare LF line endings, so both forms are looked for.
func headEnd(buf []byte) int {
	if i := bytes.Index(buf, []byte("\n\r\n")); i >= 0 {
		if j := bytes.Index(buf[:i+1], []byte("\n\n")); j >= 0 {
			return j + 2
		}
		return i + 3
	}
	if j := bytes.Index(buf, []byte("\n\n")); j >= 0 {
		return j + 2
	}
	return -1
}

// parseHead parses a request head, or returns nil if net/http should
// judge it.
func parseHead(head []byte) *http.Request {
	if req := parseSimpleRequest(head); req != nil {
		return req
	}
	hp := headParsers.Get().(*headParser)
	defer headParsers.Put(hp)
	hp.src.Reset(head)
	hp.br.Reset(&hp.src)
	req, err := http.ReadRequest(hp.br)
	if err != nil || hp.br.Buffered() != 0 || hp.src.Len() != 0 {
		return nil
	}
	return req
}

// frontEligible applies net/http's server-side checks and the fast path's
// own limits; anything else is net/http's to answer. http.ReadRequest has
// moved the Host header into req.Host, so the head is scanned to insist on
// exactly one, as net/http's server does.
func frontEligible(req *http.Request, head []byte) bool {
	if req.ProtoMajor != 1 || !fastEligible(req) || req.URL.Host != "" {
		return false
	}
	if hostFields(head) != 1 || !httpguts.ValidHostHeader(req.Host) {
		return false
	}
	for k, vv := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return false
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return false
			}
		}
	}
	return true
}

// hostFields counts the Host fields of a request head.
func hostFields(head []byte) int {
	n := 0
	for {
		i := bytes.IndexByte(head, '\n')
		if i < 0 || i+6 > len(head) {
			return n
		}
		head = head[i+1:]
		if (head[0] == 'H' || head[0] == 'h') && (head[1] == 'O' || head[1] == 'o') &&
			(head[2] == 'S' || head[2] == 's') && (head[3] == 'T' || head[3] == 't') && head[4] == ':' {
			n++
		}
	}
}

// frontWriter is an http.ResponseWriter writing HTTP/1.1 framing straight
// to the connection's buffer.
type frontWriter struct {
	bw    *bufio.Writer
	req   *http.Request
	h     http.Header
	watch *clientWatch
	c     net.Conn
	// sendBy is the connection's write deadline: it outlives requests,
	// so that one set for an earlier answer spares a timer update.
	sendBy    time.Time
	sendSlack time.Duration
	// closing is the front's: once it shuts down, answers say
	// Connection: close, as net/http's do, so that no client sends
	// another request on a connection about to close.
	closing *atomic.Bool

	// port is c's local port, once asked for (localPort); it outlives
	// requests, as the connection does.
	port string

	status     int
	wroteHead  bool
	noBody     bool
	chunked    bool
	closeAfter bool
	err        error
}

// localPort is the port of the load balancer's address that fw's
// connection came in on.
func (fw *frontWriter) localPort() string {
	if fw.port == "" {
		if _, port, err := net.SplitHostPort(fw.c.LocalAddr().String()); err == nil {
			fw.port = port
		}
	}
	return fw.port
}

// reset prepares fw, which lives as long as its connection, for req.
func (fw *frontWriter) reset(req *http.Request) {
	clear(fw.h)
	*fw = frontWriter{bw: fw.bw, h: fw.h, watch: fw.watch, c: fw.c, sendBy: fw.sendBy, sendSlack: fw.sendSlack, closing: fw.closing, port: fw.port, req: req}
}

// SetWriteDeadline moves the connection's write deadline, for
// http.ResponseController and the recorder's send timeout; a deadline no
// more than the send slack past the one set is left as it is.
func (fw *frontWriter) SetWriteDeadline(t time.Time) error {
	if !t.IsZero() && !fw.sendBy.IsZero() && t.Sub(fw.sendBy) < fw.sendSlack && !t.Before(fw.sendBy) {
		return nil
	}
	fw.sendBy = t
	return fw.c.SetWriteDeadline(t)
}

func (fw *frontWriter) watchUpstream(c net.Conn) { fw.watch.setUpstream(c) }
func (fw *frontWriter) unwatchUpstream() bool    { return fw.watch.setUpstream(nil) }
func (fw *frontWriter) clientGone() bool         { return fw.watch.isGone() }

func (fw *frontWriter) Header() http.Header { return fw.h }

func (fw *frontWriter) WriteHeader(code int) {
	if fw.wroteHead || fw.status != 0 {
		return
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		// Interim responses (103 Early Hints) go out at once.
		fw.writeStatusLine(code)
		fw.writeFields(nil)
		fw.bw.WriteString("\r\n")
		fw.err = fw.bw.Flush()
		return
	}
	fw.status = code
}

func (fw *frontWriter) writeStatusLine(code int) {
	fw.bw.WriteString("HTTP/1.1 ")
	if code >= 100 && code <= 999 {
		fw.bw.WriteByte(byte('0' + code/100))
		fw.bw.WriteByte(byte('0' + code/10%10))
		fw.bw.WriteByte(byte('0' + code%10))
	} else {
		fw.bw.WriteString(strconv.Itoa(code))
	}
	fw.bw.WriteByte(' ')
	fw.bw.WriteString(http.StatusText(code))
	fw.bw.WriteString("\r\n")
}

// framingHeaders are decided by the front itself.
var framingHeaders = map[string]bool{"Connection": true, "Transfer-Encoding": true, "Keep-Alive": true}

// writeFields writes the header map, skipping framing and trailers, with
// newlines in values turned into spaces as net/http does.
func (fw *frontWriter) writeFields(skip map[string]bool) {
	for k, vv := range fw.h {
		if (skip != nil && skip[k]) || strings.HasPrefix(k, http.TrailerPrefix) || !httpguts.ValidHeaderFieldName(k) {
			continue
		}
		for _, v := range vv {
			fw.bw.WriteString(k)
			fw.bw.WriteString(": ")
			if strings.ContainsAny(v, "\r\n") {
				v = strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
			}
			fw.bw.WriteString(v)
			fw.bw.WriteString("\r\n")
		}
	}
}

func (fw *frontWriter) writeHead() {
	if fw.wroteHead {
		return
	}
	fw.wroteHead = true
	if fw.status == 0 {
		fw.status = http.StatusOK
	}
	fw.writeStatusLine(fw.status)
	fw.noBody = fw.req.Method == http.MethodHead || fw.status == http.StatusNoContent || fw.status == http.StatusNotModified
	hasLength := false
	if cl := fw.h["Content-Length"]; len(cl) == 1 {
		if n, err := strconv.ParseInt(cl[0], 10, 64); err == nil && n >= 0 {
			hasLength = true
		}
	} else if len(cl) > 1 {
		delete(fw.h, "Content-Length")
	}
	switch {
	case fw.noBody, hasLength:
	case fw.req.ProtoAtLeast(1, 1):
		fw.chunked = true
		fw.bw.WriteString("Transfer-Encoding: chunked\r\n")
	default:
		// An HTTP/1.0 client learns the end of an unsized body from the
		// connection closing.
		fw.closeAfter = true
	}
	if !fw.chunked {
		delete(fw.h, "Trailer")
	}
	if fw.req.Close || fw.closing != nil && fw.closing.Load() {
		fw.closeAfter = true
	}
	switch {
	case fw.closeAfter:
		fw.bw.WriteString("Connection: close\r\n")
	case !fw.req.ProtoAtLeast(1, 1):
		fw.bw.WriteString("Connection: keep-alive\r\n")
	}
	fw.writeFields(framingHeaders)
	fw.bw.WriteString("\r\n")
}

func (fw *frontWriter) Write(b []byte) (int, error) {
	if fw.err != nil {
		return 0, fw.err
	}
	fw.writeHead()
	if fw.noBody || len(b) == 0 {
		return len(b), nil
	}
	if fw.chunked {
		var num [16]byte
		fw.bw.Write(strconv.AppendInt(num[:0], int64(len(b)), 16))
		fw.bw.WriteString("\r\n")
	}
	n, err := fw.bw.Write(b)
	if err == nil && fw.chunked {
		_, err = fw.bw.WriteString("\r\n")
	}
	if err != nil {
		fw.err = err
	}
	return n, err
}

// Flush sends what is buffered, for streaming responses.
func (fw *frontWriter) Flush() {
	if fw.err != nil {
		return
	}
	fw.writeHead()
	fw.err = fw.bw.Flush()
}

// finish ends the response: the last chunk and the trailers.
func (fw *frontWriter) finish() {
	if fw.err != nil {
		return
	}
	fw.writeHead()
	if !fw.chunked {
		return
	}
	fw.bw.WriteString("0\r\n")
	for _, names := range fw.h["Trailer"] {
		for name := range strings.SplitSeq(names, ",") {
			k := http.CanonicalHeaderKey(strings.TrimSpace(name))
			for _, v := range fw.h[k] {
				fw.writeTrailer(k, v)
			}
		}
	}
	for k, vv := range fw.h {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
			for _, v := range vv {
				fw.writeTrailer(name, v)
			}
		}
	}
	_, fw.err = fw.bw.WriteString("\r\n")
}

func (fw *frontWriter) writeTrailer(k, v string) {
	if !httpguts.ValidTrailerHeader(k) || !httpguts.ValidHeaderFieldValue(v) {
		return
	}
	fw.bw.WriteString(k)
	fw.bw.WriteString(": ")
	fw.bw.WriteString(v)
	fw.bw.WriteString("\r\n")
}

// watchAfter is how long a request runs before its client connection is
// watched for a disconnect. Watching costs a goroutine and a read; most
// requests are done long before.
const watchAfter = 100 * time.Millisecond

// clientWatch notices a client that goes away while its request is still
// with the instance, and aborts the upstream exchange, as net/http's
// server does by cancelling the request context. It reads the client
// connection only between arm and disarm, when the serving goroutine does
// not.
type clientWatch struct {
	c      net.Conn
	br     *bufio.Reader
	timer  *time.Timer
	exited chan struct{} // one value per run that started

	mu       sync.Mutex
	upstream net.Conn
	stopped  bool // disarm has begun: the read's end is not a disconnect
	running  bool
	gone     bool
	aborted  bool // upstream was cut
}

func newClientWatch(c net.Conn, br *bufio.Reader) *clientWatch {
	w := &clientWatch{c: c, br: br, exited: make(chan struct{}, 1)}
	w.timer = time.AfterFunc(time.Hour, w.run)
	w.timer.Stop()
	return w
}

func (w *clientWatch) arm() {
	w.mu.Lock()
	w.stopped, w.gone, w.aborted, w.upstream = false, false, false, nil
	w.mu.Unlock()
	w.timer.Reset(watchAfter)
}

func (w *clientWatch) run() {
	w.mu.Lock()
	if w.stopped {
		w.mu.Unlock()
		w.exited <- struct{}{}
		return
	}
	// Clear the deadline under the lock: disarm sets its own once it sees
	// running, and must not have it undone.
	w.c.SetReadDeadline(time.Time{})
	w.running = true
	w.mu.Unlock()
	// Peek leaves any pipelined bytes in the buffer for the next request.
	_, err := w.br.Peek(1)
	w.mu.Lock()
	w.running = false
	if err != nil && !w.stopped {
		w.gone = true
		w.cutLocked()
	}
	w.mu.Unlock()
	w.exited <- struct{}{}
}

// disarm stops watching before the serving goroutine reads the
// connection again. It reports whether the client went away, and whether
// the watch ran, which changes the connection's read deadline.
func (w *clientWatch) disarm() (gone, ran bool) {
	if w.timer.Stop() {
		return false, false
	}
	// The timer fired: wait for its run, cutting its read short.
	w.mu.Lock()
	w.stopped = true
	if w.running {
		w.c.SetReadDeadline(aLongTimeAgo)
	}
	w.mu.Unlock()
	<-w.exited
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.gone, true
}

// setUpstream sets the connection to cut if the client goes; it reports
// whether the previous one was cut.
func (w *clientWatch) setUpstream(c net.Conn) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	aborted := w.aborted
	w.upstream, w.aborted = c, false
	if c != nil && w.gone {
		w.cutLocked()
	}
	return aborted
}

func (w *clientWatch) isGone() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.gone
}

// abort cuts the upstream exchange, for shutdown.
func (w *clientWatch) abort() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.gone = true
	w.cutLocked()
}

func (w *clientWatch) cutLocked() {
	if w.upstream != nil {
		w.upstream.SetDeadline(aLongTimeAgo)
		w.aborted = true
	}
}

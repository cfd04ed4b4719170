package ingress

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/textproto"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The fast path proxies requests without a body (most GETs) over
// HTTP/1.1 connections that the serving goroutine reads and writes
// itself. http.Transport hands every request to a write goroutine and
// every response back from a read goroutine; on a proxy whose work is
// mostly those hand-offs, that roughly doubled the CPU per request.
// Requests with a body, upgrades, Expect and TE go through ReverseProxy,
// whose concurrent reading and writing they need.

// fastEligible reports whether r can take the fast path.
func fastEligible(r *http.Request) bool {
	if r.ContentLength != 0 || len(r.TransferEncoding) > 0 || r.Method == http.MethodConnect {
		return false
	}
	h := r.Header
	return h["Upgrade"] == nil && h["Te"] == nil && h["Expect"] == nil && h["Trailer"] == nil
}

// pconn is one keep-alive connection to an instance.
type pconn struct {
	conn net.Conn
	rw   io.ReadWriter // conn's raw I/O (sockIO)
	raw  syscall.RawConn
	lim  headLimit // rw, limited while a long answer head is read
	br   *bufio.Reader
	head []byte    // the request head being sent, kept for its capacity
	idle time.Time // when it went back to the pool

	// For answers read by readSimpleResponse, reused from one request to
	// the next on the connection.
	resp   http.Response
	body   fixedBody
	fields []field
}

// maxKeptHead bounds the request-head buffer a pooled connection keeps.
const maxKeptHead = 16 << 10

// send writes a request head. (Writing it from inside RawConn.Read, so
// that the read after it never finds EAGAIN, was tried and dropped: the
// readiness reset that needs loses an end of stream already queued by an
// instance that half-closed the idle connection, and the wait then never
// ends.)
func (pc *pconn) send(head []byte) error {
	_, err := pc.rw.Write(head)
	return err
}

func (pc *pconn) close() { pc.conn.Close() }

// alive peeks at the socket without blocking: an idle connection that
// reads EOF or data was closed or spoken to by the server and must not be
// reused. Every reuse checks, however short the idle time: an instance
// may close a connection at once (a restart, a tiny idle timeout) or send
// bytes after a response's end (a body longer than its Content-Length),
// which would otherwise be read as the next request's answer.
func (pc *pconn) alive() bool {
	if q, ok := pc.rw.(interface{ quiet() bool }); ok {
		return q.quiet()
	}
	if pc.raw == nil {
		return true
	}
	var b [1]byte
	ok := false
	err := pc.raw.Read(func(fd uintptr) bool {
		_, _, rerr := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		ok = rerr == syscall.EAGAIN
		return true
	})
	return err == nil && ok
}

// connPool is an endpoint's idle fast-path connections, most recently
// used last so the warmest is reused first.
type connPool struct {
	mu     sync.Mutex
	idle   []*pconn
	closed bool // retired: returned connections are closed at once
}

// getConn returns an idle connection or dials a new one. fresh skips the
// pool.
func (p *Proxy) getConn(ctx context.Context, ep *endpoint, fresh bool) (pc *pconn, reused bool, err error) {
	if !fresh {
		pool := &ep.pool
		for {
			pool.mu.Lock()
			n := len(pool.idle)
			if n == 0 {
				pool.mu.Unlock()
				break
			}
			pc = pool.idle[n-1]
			pool.idle[n-1] = nil
			pool.idle = pool.idle[:n-1]
			pool.mu.Unlock()
			if pc.alive() {
				return pc, true, nil
			}
			pc.close()
		}
	}
	c, err := p.dialer.DialContext(ctx, "tcp", ep.addr)
	if err != nil {
		return nil, false, &dialError{addr: ep.addr, err: err}
	}
	rw := newSockIO(c)
	pc = &pconn{conn: c, rw: rw, lim: headLimit{r: rw}}
	pc.br = bufio.NewReaderSize(&pc.lim, 16<<10)
	if sc, ok := c.(syscall.Conn); ok {
		pc.raw, _ = sc.SyscallConn()
	}
	return pc, false, nil
}

func (p *Proxy) putConn(ep *endpoint, pc *pconn) {
	pool := &ep.pool
	pc.idle = time.Now()
	pool.mu.Lock()
	if pool.closed || len(pool.idle) >= p.cfg.MaxIdlePerEndpoint {
		pool.mu.Unlock()
		pc.close()
		return
	}
	pool.idle = append(pool.idle, pc)
	pool.mu.Unlock()
}

// closeIdle closes idle connections; with retire set, later returns are
// closed too.
func (cp *connPool) closeIdle(retire bool) {
	cp.mu.Lock()
	idle := cp.idle
	cp.idle = nil
	if retire {
		cp.closed = true
	}
	cp.mu.Unlock()
	for _, pc := range idle {
		pc.close()
	}
}

// expire closes connections idle since before cutoff.
func (cp *connPool) expire(cutoff time.Time) {
	cp.mu.Lock()
	var old []*pconn
	keep := cp.idle[:0]
	for _, pc := range cp.idle {
		if pc.idle.Before(cutoff) {
			old = append(old, pc)
		} else {
			keep = append(keep, pc)
		}
	}
	clear(cp.idle[len(keep):])
	cp.idle = keep
	cp.mu.Unlock()
	for _, pc := range old {
		pc.close()
	}
}

func noStop() bool { return true }

var errStale = errors.New("connection closed by the instance before answering")

// aLongTimeAgo is a deadline that fails pending I/O at once.
var aLongTimeAgo = time.Unix(1, 0)

// serveFast proxies r on the fast path. It owns the response from here on.
func (p *Proxy) serveFast(st *reqState, r *http.Request) {
	ctx := r.Context()
	cw, _ := st.rec.ResponseWriter.(clientWatcher)
	staleRetried := false
	for {
		pc, reused, err := p.getConn(ctx, st.ep, staleRetried)
		if err != nil {
			if clientGone(ctx, cw) {
				st.rec.status = statusClientClosed
				return
			}
			p.connectFailed(st.ep, err)
			if !st.retried && p.switchEndpoint(st) {
				staleRetried = false
				continue
			}
			p.fastError(st, err)
			return
		}
		// A client that goes away aborts the exchange with the instance.
		// (Requests from the front have no cancellation to watch.)
		stop := noStop
		if ctx.Done() != nil {
			stop = context.AfterFunc(ctx, func() { pc.conn.SetDeadline(aLongTimeAgo) })
		}
		if cw != nil {
			cw.watchUpstream(pc.conn)
		}
		resp, err := p.roundTripFast(st, pc, r)
		if err != nil {
			stop()
			if cw != nil {
				cw.unwatchUpstream()
			}
			pc.close()
			if clientGone(ctx, cw) {
				st.rec.status = statusClientClosed
				return
			}
			// A kept-alive connection the instance closed meanwhile: the
			// request may go again on a new one if it is idempotent. Any
			// other failure (a timeout, a malformed answer) may have left
			// the request running on the instance, and is not retried.
			if reused && !staleRetried && errors.Is(err, errStale) && idempotent(r.Method) {
				staleRetried = true
				continue
			}
			p.fastError(st, err)
			return
		}
		if p.cfg.ResponseHeaderTimeout > 0 {
			// Each cut marks the client gone before it sets its
			// deadline: one that came before this lift is seen and
			// made again, one after it stands.
			pc.conn.SetReadDeadline(time.Time{})
			if clientGone(ctx, cw) {
				pc.conn.SetDeadline(aLongTimeAgo)
			}
		}
		st.ep.succeeded()
		p.relayFast(st, r, pc, resp, stop, cw)
		return
	}
}

// clientWatcher is implemented by the front's ResponseWriter, whose
// requests carry no cancellation: it aborts the exchange on the upstream
// connection it is given when the client goes away.
type clientWatcher interface {
	watchUpstream(net.Conn)
	// unwatchUpstream stops watching and reports whether it aborted the
	// connection, which then must not be reused.
	unwatchUpstream() bool
	clientGone() bool
}

func clientGone(ctx context.Context, cw clientWatcher) bool {
	return ctx.Err() != nil || (cw != nil && cw.clientGone())
}

// switchEndpoint moves st to another endpoint after a connect error.
func (p *Proxy) switchEndpoint(st *reqState) bool {
	be := p.table.Load().backends[st.be.key]
	if be == nil {
		be = st.be
	}
	alt := p.acquire(be, st.ep)
	if alt == nil {
		return false
	}
	st.ep.release()
	st.ep = alt
	st.retried = true
	st.be.app.retries.Inc()
	return true
}

func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// roundTripFast writes r on pc and reads the response head. 1xx
// responses are passed on (103 Early Hints) or skipped.
func (p *Proxy) roundTripFast(st *reqState, pc *pconn, r *http.Request) (*http.Response, error) {
	// The caller lifts the deadline after a good head: lifting it here
	// could undo a client's going away, which also works by deadline.
	if t := p.cfg.ResponseHeaderTimeout; t > 0 {
		pc.conn.SetReadDeadline(time.Now().Add(t))
	}
	pc.head = appendRequest(pc.head[:0], r, st.ep.addr, st.port, r.TLS != nil || st.fwdHTTPS)
	err := pc.send(pc.head)
	if cap(pc.head) > maxKeptHead {
		pc.head = nil
	}
	if err != nil {
		if errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) {
			// The instance closed the connection: it cannot have
			// taken a request whose head it did not read whole.
			return nil, fmt.Errorf("%w (%v)", errStale, err)
		}
		return nil, err
	}
	if resp := pc.readSimpleResponse(r, st.rec.Header()); resp != nil {
		return resp, nil
	}
	// Heads too long for readSimpleResponse's buffer are read with a
	// limit, as http.Transport reads them, and so are interim answers.
	// A kept-alive connection the instance had closed ends (or is reset)
	// before the first byte of an answer: that, and only that, is stale.
	// Once any byte came, the instance took the request, and a retry
	// could run it twice. (ReadResponse says io.ErrUnexpectedEOF for an
	// end before the first byte too, hence the Peek.)
	if _, err := pc.br.Peek(1); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
			return nil, errStale
		}
		return nil, err
	}
	defer pc.lim.off()
	for interim := 0; ; interim++ {
		if interim > maxInterimResponses {
			return nil, fmt.Errorf("more than %d interim (1xx) answers", maxInterimResponses)
		}
		pc.lim.on(maxResponseHeadBytes - int64(pc.br.Buffered()))
		resp, err := http.ReadResponse(pc.br, r)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			if resp.StatusCode == http.StatusSwitchingProtocols {
				return nil, errors.New("instance switched protocols without being asked")
			}
			return resp, nil
		}
		if resp.StatusCode == http.StatusEarlyHints {
			h := st.rec.Header()
			for k, vv := range resp.Header {
				h[k] = vv
			}
			st.rec.WriteHeader(resp.StatusCode)
			clear(h)
		}
	}
}

// maxResponseHeadBytes bounds an instance's answer head on both paths
// (http.Transport's MaxResponseHeaderBytes on the other); a longer one is
// a 502.
const maxResponseHeadBytes = 1 << 20

// maxInterimResponses bounds the 1xx answers before the final one, as
// http.Transport does.
const maxInterimResponses = 5

// headLimit sits between a pooled connection and its reader: while on,
// it lets at most n more bytes through.
type headLimit struct {
	r      io.Reader
	n      int64
	active bool
}

var errHeadTooLarge = fmt.Errorf("answer head larger than %d bytes", maxResponseHeadBytes)

func (l *headLimit) Read(p []byte) (int, error) {
	if !l.active {
		return l.r.Read(p)
	}
	if l.n <= 0 {
		return 0, errHeadTooLarge
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

func (l *headLimit) on(n int64) { l.active, l.n = true, n }
func (l *headLimit) off()       { l.active = false }

var requestHopHeaders = func() map[string]bool {
	m := map[string]bool{
		// Written from r.Host: an HTTP/2 request may carry a host field
		// beside its :authority, and only the one routed on goes on.
		"Host":       true,
		"Connection": true, "Proxy-Connection": true, "Keep-Alive": true, "Proxy-Authenticate": true,
		"Proxy-Authorization": true, "Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
		"Content-Length": true,
	}
	// Set (or removed) by the proxy itself.
	for _, f := range forwardedFields {
		m[f] = true
	}
	return m
}()

// appendRequest serialises r as an HTTP/1.1 request head without a body,
// saying X-Forwarded-Proto https if https. Header names and values were
// validated by the server that parsed r.
func appendRequest(b []byte, r *http.Request, addr, port string, https bool) []byte {
	b = append(b, r.Method...)
	b = append(b, ' ')
	b = append(b, r.URL.RequestURI()...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	if r.Host != "" {
		b = append(b, r.Host...)
	} else {
		b = append(b, addr...)
	}
	b = append(b, "\r\n"...)
	listed := connectionListed(r.Header)
	for k, vv := range r.Header {
		if requestHopHeaders[k] || (listed != nil && listed[k]) || forwardingLookalike(k) {
			continue
		}
		for _, v := range vv {
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	}
	// X-Forwarded-For keeps the chain of earlier proxies and appends the
	// client, as ReverseProxy's SetXForwarded does on the other path.
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		b = append(b, "X-Forwarded-For: "...)
		for _, prior := range r.Header["X-Forwarded-For"] {
			b = append(b, prior...)
			b = append(b, ", "...)
		}
		b = append(b, ip...)
		b = append(b, "\r\nX-Real-Ip: "...)
		b = append(b, ip...)
		b = append(b, "\r\n"...)
	}
	if port != "" {
		b = append(b, "X-Forwarded-Port: "...)
		b = append(b, port...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "X-Forwarded-Host: "...)
	b = append(b, r.Host...)
	if https {
		b = append(b, "\r\nX-Forwarded-Proto: https\r\n"...)
	} else {
		b = append(b, "\r\nX-Forwarded-Proto: http\r\n"...)
	}
	switch r.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
		b = append(b, "Content-Length: 0\r\n"...)
	}
	return append(b, "\r\n"...)
}

// connectionListed returns the headers named in Connection, which are
// hop-by-hop too; nil when there are none (the common case).
func connectionListed(h http.Header) map[string]bool {
	var out map[string]bool
	for _, v := range h["Connection"] {
		for f := range strings.SplitSeq(v, ",") {
			if f = textproto.TrimString(f); f != "" {
				if out == nil {
					out = map[string]bool{}
				}
				out[textproto.CanonicalMIMEHeaderKey(f)] = true
			}
		}
	}
	return out
}

var responseHopHeaders = map[string]bool{
	"Connection": true, "Proxy-Connection": true, "Keep-Alive": true, "Proxy-Authenticate": true,
	"Proxy-Authorization": true, "Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
}

// relayFast sends resp to the client and returns pc to the pool if the
// response ended cleanly.
// stop and cw end the client-cancellation hooks set up by serveFast; if
// one has fired, the connection's deadline is spoilt and it is not reused.
func (p *Proxy) relayFast(st *reqState, r *http.Request, pc *pconn, resp *http.Response, stop func() bool, cw clientWatcher) {
	reusable := false
	defer func() {
		if reusable {
			p.putConn(st.ep, pc)
		} else {
			pc.close()
		}
	}()
	dst := st.rec.Header()
	// An answer read by readSimpleResponse has its fields in dst already.
	src := resp.Header
	if src == nil {
		src = dst
	}
	listed := connectionListed(resp.Header)
	for k, vv := range resp.Header {
		if responseHopHeaders[k] || (listed != nil && listed[k]) {
			continue
		}
		dst[k] = vv
	}
	announced := len(resp.Trailer)
	if announced > 0 {
		keys := make([]string, 0, announced)
		for k := range resp.Trailer {
			keys = append(keys, k)
		}
		dst.Add("Trailer", strings.Join(keys, ", "))
	}
	st.rec.WriteHeader(resp.StatusCode)

	streaming := resp.ContentLength == -1
	if !streaming {
		if ct := src.Get("Content-Type"); strings.HasPrefix(ct, "text/event-stream") {
			base, _, _ := mime.ParseMediaType(ct)
			streaming = base == "text/event-stream"
		}
	}
	bufp := buffers.Get().(*[]byte)
	buf := *bufp
	var rerr error
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := st.rec.Write(buf[:n]); werr != nil {
				rerr = werr
				break
			}
			if streaming {
				http.NewResponseController(&st.rec).Flush()
			}
		}
		if err != nil {
			if err != io.EOF {
				rerr = err
			}
			break
		}
	}
	buffers.Put(bufp)
	fired := !stop()
	if cw != nil && cw.unwatchUpstream() {
		fired = true
	}
	if rerr != nil {
		if !clientGone(r.Context(), cw) {
			p.log.Debug("response body copy failed", "app", st.be.app.key, "instance", st.ep.instance, "err", rerr)
			// The client must not take a cut-short body for a whole
			// one: abort the response as ReverseProxy does.
			panic(http.ErrAbortHandler)
		}
		return
	}
	if len(resp.Trailer) > 0 {
		http.NewResponseController(&st.rec).Flush()
		for k, vv := range resp.Trailer {
			if len(resp.Trailer) != announced {
				k = http.TrailerPrefix + k
			}
			dst[k] = vv
		}
	}
	reusable = !fired && !resp.Close && pc.br.Buffered() == 0
}

func (p *Proxy) fastError(st *reqState, err error) {
	p.log.Warn("upstream request failed", "app", st.be.app.key, "instance", st.ep.instance, "addr", st.ep.addr, "err", err)
	status, code := upstreamFailure(err)
	writeError(&st.rec, status, code,
		"app "+st.be.app.key+": instance "+st.ep.instance+" did not answer: "+reason(err),
		map[string]string{"app": st.be.app.key, "instance": st.ep.instance})
}

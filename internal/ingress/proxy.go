package ingress

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/gantry-dev/gantry/internal/discovery"
)

// Proxy is the HTTP and TCP load balancer. Build it with New; serve with
// ListenAndServe, or mount it as an http.Handler and run Run beside it.
type Proxy struct {
	cfg Config
	src discovery.Source
	log *slog.Logger
	m   *metrics
	rp  *httputil.ReverseProxy

	table atomic.Pointer[table]

	// mu guards the state below, which only snapshot application and
	// housekeeping touch; the request path reads the table alone.
	mu            sync.Mutex
	endpoints     map[string]*endpoint // by endpoint key, every live one
	apps          map[string]*appStats // by namespace/name
	draining      map[*endpoint]int    // retired endpoints → idle sweeps seen
	lastConflicts map[string]bool      // to log each collision once
	tcp           *tcpBalancer         // nil unless Run is running
	nodePorts     map[string]int       // as last told to Config.OnNodePorts
	running       atomic.Bool
	tunnels       atomic.Int64 // requests asking for an upgrade, in flight
	// httpsPort is the port HTTPS is served on while Serve serves it:
	// where plain HTTP requests for TLS routes are redirected.
	httpsPort atomic.Pointer[string]
	// certErrs holds when each certificate failure was last logged.
	certErrMu sync.Mutex
	certErrs  map[string]time.Time

	dialer *net.Dialer
}

// New builds a Proxy serving src's current snapshot. It starts nothing:
// Run (or ListenAndServe) follows later snapshots and opens TCP ports.
func New(cfg Config, src discovery.Source, log *slog.Logger) (*Proxy, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if src == nil {
		return nil, errors.New("ingress: a discovery source is required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	p := &Proxy{
		cfg:           cfg,
		src:           src,
		log:           log,
		m:             m,
		endpoints:     map[string]*endpoint{},
		apps:          map[string]*appStats{},
		draining:      map[*endpoint]int{},
		lastConflicts: map[string]bool{},
		dialer:        &net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second},
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite:        p.rewrite,
		Transport:      upstream{p},
		ErrorHandler:   p.proxyError,
		ModifyResponse: refuseOtherSwitch,
		// Copy errors after the response started (a client that went
		// away) are routine for a proxy; keep them out of Info.
		ErrorLog:   slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		BufferPool: bufferPool{},
	}
	p.apply(src.Current())
	return p, nil
}

// Revision is the store revision of the snapshot being served; tests and
// the propagation benchmark use it to know a change has landed.
func (p *Proxy) Revision() int64 { return p.table.Load().revision }

// RequestRate is the app's requests per second through the ingress,
// averaged over Config.RateWindow. It needs Run to be running (Run takes a
// sample every second) and is 0 for an unknown app.
func (p *Proxy) RequestRate(namespace, app string) float64 {
	p.mu.Lock()
	a := p.apps[namespace+"/"+app]
	p.mu.Unlock()
	if a == nil {
		return 0
	}
	return a.rate(time.Now())
}

type stateKey struct{}

// reqState follows one request through ReverseProxy's callbacks, which
// all run on the ServeHTTP goroutine.
type reqState struct {
	rec      recorder
	be       *backend
	ep       *endpoint
	upgraded bool
	retried  bool
	// fwdHTTPS: a proxy in front said the client used HTTPS, and a TLS
	// route was served over plain HTTP on its word; the instance is told
	// so too, or an App that insists on HTTPS itself redirects in a loop.
	fwdHTTPS bool
	// port is the port the client connected to, for X-Forwarded-Port
	// ("" when not known).
	port string
	// body guards the request body, when it has one (see bodyGuard).
	body *bodyGuard
}

var statePool = sync.Pool{New: func() any { return new(reqState) }}

// ServeHTTP routes one request.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	st := statePool.Get().(*reqState)
	st.rec.ResponseWriter = w
	switch {
	case r.ProtoMajor == 1 && !isUpgrade(r):
		// An upgraded connection is a tunnel, and must keep no deadline.
		st.rec.sendTimeout = p.cfg.ClientSendTimeout
		st.rec.armSend(start)
	case r.ProtoMajor == 2 && r.Method != http.MethodConnect:
		// A stream is reset when its write deadline passes, also while
		// nothing is being written (a long poll waiting for its
		// instance): the deadline holds only while a write is under way.
		// (An extended CONNECT, a WebSocket over HTTP/2, is a tunnel.)
		st.rec.sendTimeout, st.rec.perWrite = p.cfg.ClientSendTimeout, true
	}
	if _, front := w.(*frontWriter); !front && r.ProtoMajor == 1 && r.ProtoMinor == 0 {
		// net/http drops an HTTP/1.0 request's Transfer-Encoding field
		// and reads no body; the front refuses such requests, but sees
		// only heads that fit its buffer (and none over TLS). A
		// connection that ends with the answer has no next request for
		// a body to pass for.
		st.rec.closeAfter = true
	}
	st.port = localPort(w, r)
	host := canonicalHost(r.Host)
	defer func() {
		if st.body != nil {
			// Before net/http releases w: the transport may read on.
			st.body.detach()
		}
		p.finish(st, r, host, start)
		*st = reqState{}
		statePool.Put(st)
	}()

	if r.ProtoMajor >= 2 {
		// HTTP/1 heads were checked by the front or net/http's reader;
		// HTTP/2 fields may hold spaces that would change the request
		// line an instance reads.
		if msg := checkH2Request(r); msg != "" {
			writeError(&st.rec, http.StatusBadRequest, "BadRequest", msg, nil)
			return
		}
	}
	if !validHostPort(r.Host) {
		writeError(&st.rec, http.StatusBadRequest, "BadRequest",
			fmt.Sprintf("Host %q has a port that is not a number from 0 to 65535", r.Host), nil)
		return
	}
	if r.ProtoMajor == 1 && len(r.TransferEncoding) > 0 {
		// net/http drops a Content-Length that came with the
		// Transfer-Encoding without a trace. The front refuses such a
		// request, but one whose head is too large for it comes here:
		// end the connection after it (RFC 9112 6.1), so that nothing a
		// proxy in front read by the length is taken for a request.
		st.rec.closeAfter = true
	}
	clean, ok := cleanRequestPath(r.URL.Path)
	if !ok {
		writeError(&st.rec, http.StatusBadRequest, "BadRequest",
			fmt.Sprintf("path %q hides a dot-segment behind ';' or a backslash, which servers read differently: escape those characters", r.URL.Path), nil)
		return
	}
	if clean != r.URL.Path {
		// The instance gets the path the route was chosen by, so that
		// the two cannot disagree about where the request belongs.
		r = withPath(r, clean)
	}
	tbl := p.table.Load()
	rt := tbl.match(host, r.URL.Path)
	if rt == nil {
		p.m.unrouted.Inc()
		if tbl.noHTTP[host] {
			writeError(&st.rec, http.StatusNotFound, "NotFound",
				fmt.Sprintf("the app at %q has no http port, so the load balancer does not serve it: add a port with protocol http to its spec.ports (an expose: tcp port is balanced at L4 on its node port instead)", host),
				map[string]string{"host": host, "path": r.URL.Path})
			return
		}
		writeError(&st.rec, http.StatusNotFound, "NotFound",
			fmt.Sprintf("no app routes host %q (path %s): check the app's routes, or use APP.NAMESPACE.%s", host, r.URL.Path, p.cfg.AppsDomain),
			map[string]string{"host": host, "path": r.URL.Path})
		return
	}
	if rt.toHTTPS && r.TLS == nil && r.RequestURI != "*" {
		if forwardedHTTPS(r) {
			st.fwdHTTPS = true
			// The client's port is the proxy's in front, as its scheme
			// is: what it says, else HTTPS's.
			st.port = "443"
			if v := r.Header.Get("X-Forwarded-Port"); v != "" {
				if n, err := strconv.Atoi(v); err == nil && n > 0 && n < 65536 {
					st.port = strconv.Itoa(n)
				}
			}
		} else if port := p.httpsPort.Load(); port != nil {
			toHTTPS(&st.rec, r, host, *port)
			return
		}
	}
	st.be = rt.backend
	st.ep = p.acquire(rt.backend, nil)
	if st.ep == nil {
		w.Header().Set("Retry-After", "1")
		writeError(&st.rec, http.StatusServiceUnavailable, "Unavailable",
			fmt.Sprintf("app %s has no ready instance: see `gantry get instances -n %s` and the app's readiness check", rt.backend.app.key, rt.backend.app.ns),
			map[string]string{"app": rt.backend.app.name, "namespace": rt.backend.app.ns, "host": host})
		return
	}
	if fastEligible(r) {
		p.serveFast(st, r)
		return
	}
	if isUpgrade(r) {
		// A tunnel, perhaps, that runs until one side closes: Serve
		// waits for it at shutdown, up to ShutdownTimeout.
		p.tunnels.Add(1)
		defer p.tunnels.Add(-1)
	} else if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 && r.Method != http.MethodConnect && !isGRPC(r) {
		// (An HTTP/2 CONNECT is a tunnel, and a gRPC call may stream
		// from the client: either may well be silent for long.)
		r = r.WithContext(r.Context())
		st.body = &bodyGuard{ReadCloser: r.Body, rc: http.NewResponseController(w), timeout: p.cfg.ClientBodyTimeout, perRead: r.ProtoMajor >= 2}
		r.Body = st.body
	}
	p.rp.ServeHTTP(&st.rec, r.WithContext(context.WithValue(r.Context(), stateKey{}, st)))
}

// isUpgrade reports whether r asks to switch protocols: an Upgrade field
// with "upgrade" among the Connection options, the only requests
// ReverseProxy turns into tunnels. An Upgrade field alone is dropped as
// hop-by-hop and leaves an ordinary request, which keeps its body and
// send timeouts.
// isUpgrade reports whether an HTTP/1 request asks to become a tunnel.
// An h2c upgrade does not: it concerns the client's connection to us,
// rewrite drops it, and the instance answers an ordinary request, which
// keeps the body and send timeouts.
func isUpgrade(r *http.Request) bool {
	up := upgradeType(r.Header)
	return r.ProtoMajor == 1 && up != "" && !strings.EqualFold(up, "h2c")
}

// upgradeType is the protocol a request or a 101 answer switches to, ""
// for none (ReverseProxy's own rule).
func upgradeType(h http.Header) string {
	if !httpguts.HeaderValuesContainsToken(h["Connection"], "Upgrade") {
		return ""
	}
	return h.Get("Upgrade")
}

// refuseOtherSwitch fails a 101 that switches to another protocol than
// the request asked for (or to one when it asked for none), before
// ReverseProxy's own check does: that check answers 502 but leaves the
// connection to the instance open until a finalizer closes it
// (golang/go#80875), while an error from ModifyResponse has ReverseProxy
// close it.
func refuseOtherSwitch(res *http.Response) error {
	if res.StatusCode != http.StatusSwitchingProtocols {
		return nil
	}
	if asked, got := upgradeType(res.Request.Header), upgradeType(res.Header); !sameProtocol(asked, got) {
		return &switchRefused{asked: asked, got: got}
	}
	return nil
}

// sameProtocol is ReverseProxy's own test of a 101, so that what it would
// refuse is refused here first: printable ASCII, equal but for ASCII case
// (strings.EqualFold would also take the Kelvin sign for a k).
func sameProtocol(asked, got string) bool {
	for i := 0; i < len(got); i++ {
		if got[i] < ' ' || got[i] > '~' {
			return false
		}
	}
	return asciiEqualFold([]byte(got), asked)
}

type switchRefused struct{ asked, got string }

func (e *switchRefused) Error() string {
	return fmt.Sprintf("the instance switched protocols to %q when the request asked for %q", e.got, e.asked)
}

// isGRPC reports whether r is a gRPC call, whose request is a stream of
// messages the client sends when it has them (a watch sends one and
// waits): no timeout between them can be right for every service.
func isGRPC(r *http.Request) bool {
	return strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc")
}

// withPath returns a shallow copy of r for path, which is sent on
// escaped afresh: the raw form held the segments that were resolved.
func withPath(r *http.Request, path string) *http.Request {
	r = r.WithContext(r.Context())
	u := *r.URL
	u.Path, u.RawPath = path, ""
	r.URL = &u
	return r
}

// toHTTPS redirects a plain HTTP request to the same URL over HTTPS, with
// 308 so that the method and body are sent again unchanged (as
// ingress-nginx does for hosts with TLS).
func toHTTPS(w http.ResponseWriter, r *http.Request, host, port string) {
	switch {
	case port != "443":
		host = net.JoinHostPort(host, port)
	case strings.Contains(host, ":"):
		host = "[" + host + "]" // an IPv6 literal
	}
	http.Redirect(w, r, "https://"+host+r.URL.RequestURI(), http.StatusPermanentRedirect)
}

// forwardedHTTPS reports whether a proxy in front says the client used
// HTTPS: redirecting then would loop. A client that sends the field
// itself only gets plain HTTP, its own choice.
func forwardedHTTPS(r *http.Request) bool {
	for _, v := range r.Header["X-Forwarded-Proto"] {
		if strings.EqualFold(strings.TrimSpace(v), "https") {
			return true
		}
	}
	return false
}

// validHostPort reports whether the port of a Host value, if it has one,
// is a decimal number up to 65535 (RFC 3986 allows it empty). A bare
// IPv6 address (more than one colon, no brackets) has no port.
func validHostPort(h string) bool {
	var port string
	if strings.HasPrefix(h, "[") {
		i := strings.IndexByte(h, ']')
		if i < 0 {
			return true // not ours to judge: no route will match
		}
		rest := h[i+1:]
		if rest == "" {
			return true
		}
		if rest[0] != ':' {
			return false
		}
		port = rest[1:]
	} else if i := strings.IndexByte(h, ':'); i >= 0 && strings.LastIndexByte(h, ':') == i {
		port = h[i+1:]
	} else {
		return true
	}
	if len(port) > 5 {
		return false
	}
	n := 0
	for i := 0; i < len(port); i++ {
		c := port[i]
		if c < '0' || c > '9' {
			return false
		}
		n = n*10 + int(c-'0')
	}
	return n <= 65535
}

// checkH2Request returns what is wrong with an HTTP/2 request that could
// not be written as an HTTP/1.1 request line and Host field, or "".
func checkH2Request(r *http.Request) string {
	switch {
	case !httpguts.ValidHeaderFieldName(r.Method):
		return fmt.Sprintf("method %q is not a token", r.Method)
	case !httpguts.ValidHostHeader(r.Host):
		return fmt.Sprintf("authority %q is not a valid host", r.Host)
	case !targetBytes(r.URL.RawQuery) || !targetBytes(r.URL.Opaque):
		return "request target holds spaces or control characters: escape them"
	}
	return ""
}

// targetBytes reports whether s has no space or control byte.
func targetBytes(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// acquire picks an endpoint of be other than skip and counts a request on
// it. If the pick was retired by a snapshot that landed after the caller
// loaded its table, the newest table is asked instead: inflight is raised
// before retired is read, and retire sets retired before the drain reads
// inflight, so either this request moves on or the drain waits for it.
func (p *Proxy) acquire(be *backend, skip *endpoint) *endpoint {
	now := monoNow()
	ep := be.pick(now, skip)
	if ep == nil {
		return nil
	}
	ep.acquire()
	if !ep.retired.Load() {
		return ep
	}
	if cur := p.table.Load().backends[be.key]; cur != nil && cur != be {
		if alt := cur.pick(now, skip); alt != nil {
			alt.acquire()
			ep.release()
			return alt
		}
	}
	// Nothing newer to go to: a retired endpoint is draining, not dead.
	return ep
}

func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	st := pr.In.Context().Value(stateKey{}).(*reqState)
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = st.ep.addr
	// Apps see the host the client asked for, as with nginx's
	// `proxy_set_header Host $host`.
	pr.Out.Host = pr.In.Host
	for k := range pr.Out.Header {
		if forwardingLookalike(k) {
			delete(pr.Out.Header, k)
		}
	}
	// Keep the chain of earlier proxies; SetXForwarded appends the client.
	if prior := pr.In.Header["X-Forwarded-For"]; len(prior) > 0 {
		pr.Out.Header["X-Forwarded-For"] = prior
	}
	pr.SetXForwarded()
	if st.fwdHTTPS {
		pr.Out.Header.Set("X-Forwarded-Proto", "https")
	}
	// The rest of what apps behind a proxy trust it for (see
	// forwardedFields): set here, whatever the client sent.
	pr.Out.Header.Del("X-Real-Ip")
	if ip, _, err := net.SplitHostPort(pr.In.RemoteAddr); err == nil {
		pr.Out.Header.Set("X-Real-Ip", ip)
	}
	pr.Out.Header.Del("X-Forwarded-Port")
	if st.port != "" {
		pr.Out.Header.Set("X-Forwarded-Port", st.port)
	}
	pr.Out.Header.Del("X-Forwarded-Prefix")
	if pr.Out.Body != nil {
		// The transport closes a request body when a connect fails, and
		// ReverseProxy's wrapper refuses reads after that; keep the body
		// readable so the retry can still send it.
		pr.Out.Body = keepOpenBody{pr.Out.Body}
	}
	// An h2c upgrade concerns the client's connection to us, not the app.
	if strings.EqualFold(pr.Out.Header.Get("Upgrade"), "h2c") {
		pr.Out.Header.Del("Upgrade")
		pr.Out.Header.Del("Connection")
		pr.Out.Header.Del("Http2-Settings")
	}
}

// forwardingLookalike reports whether a request field is a forwarding
// field the proxy sets, spelt with '_' for '-' (X_Forwarded_Proto): CGI-
// style servers (Rack, WSGI, PHP) read both as HTTP_X_FORWARDED_PROTO, so
// the client's would stand in for the proxy's. nginx drops every field
// with '_' by default; these are the ones that matter here.
func forwardingLookalike(k string) bool {
	if strings.IndexByte(k, '_') < 0 {
		return false
	}
	k = strings.ReplaceAll(k, "_", "-")
	for _, f := range forwardedFields {
		if strings.EqualFold(k, f) {
			return true
		}
	}
	return false
}

// forwardedFields are the request fields the load balancer owns: it sets
// them (X-Forwarded-For appended to), or removes them (Forwarded,
// X-Forwarded-Prefix: it strips no prefix), whatever the client sent, as
// apps behind a proxy take them from it: the client's address, the host,
// scheme and port it asked for.
var forwardedFields = [...]string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "Forwarded",
	"X-Real-Ip", "X-Forwarded-Port", "X-Forwarded-Prefix"}

// localPort is the port of the load balancer's address the request came
// in on, or "" if not known.
func localPort(w http.ResponseWriter, r *http.Request) string {
	if fw, ok := w.(*frontWriter); ok {
		return fw.localPort()
	}
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if _, port, err := net.SplitHostPort(a.String()); err == nil {
			return port
		}
	}
	return ""
}

// upstream is the ReverseProxy transport: it sends to the endpoint chosen
// in ServeHTTP and retries once elsewhere on a connect error.
type upstream struct{ p *Proxy }

func (u upstream) RoundTrip(req *http.Request) (*http.Response, error) {
	p := u.p
	st := req.Context().Value(stateKey{}).(*reqState)
	resp, err := p.send(st, req)
	var de *dialError
	if err == nil || !errors.As(err, &de) || req.Context().Err() != nil {
		return resp, err
	}
	// Nothing reached the app, so any method may go again, and the body
	// (if any) is unread. Use the newest view of the app's endpoints: the
	// failed one has often just left it.
	be := p.table.Load().backends[st.be.key]
	if be == nil {
		be = st.be
	}
	alt := p.acquire(be, st.ep)
	if alt == nil {
		return nil, err
	}
	st.ep.release()
	st.ep = alt
	st.retried = true
	st.be.app.retries.Inc()
	retry := req.WithContext(req.Context())
	u2 := *req.URL
	u2.Host = alt.addr
	retry.URL = &u2
	return p.send(st, retry)
}

// send does one attempt on st.ep and keeps its passive health.
func (p *Proxy) send(st *reqState, req *http.Request) (*http.Response, error) {
	ep := st.ep
	resp, err := ep.tr.RoundTrip(req)
	if err == nil {
		ep.succeeded()
		if resp.StatusCode == http.StatusSwitchingProtocols {
			st.upgraded = true
		}
		return resp, nil
	}
	var de *dialError
	if errors.As(err, &de) && req.Context().Err() == nil {
		p.connectFailed(ep, err)
	}
	return nil, err
}

// connectFailed counts a failed connect to ep towards its ejection,
// unless the failure was this process's or this machine's own (out of
// file descriptors, ports or memory): every instance would fail alike,
// and ejecting healthy ones would only spread the outage.
func (p *Proxy) connectFailed(ep *endpoint, err error) {
	ep.app.connectErrors.Inc()
	if localDialError(err) {
		p.log.Warn("connect to instance failed on the load balancer's side", "app", ep.app.name, "ns", ep.app.ns,
			"instance", ep.instance, "addr", ep.addr, "err", err)
		return
	}
	if ep.connectFailed(&p.cfg, monoNow()) {
		ep.app.ejections.Inc()
		p.log.Warn("ejecting instance after consecutive connect failures",
			"app", ep.app.name, "ns", ep.app.ns, "instance", ep.instance, "addr", ep.addr,
			"failures", p.cfg.EjectAfter, "for", p.cfg.EjectFor)
	}
}

// statusClientClosed is nginx's code for a client that went away before
// the response; it only appears in logs and metrics.
const statusClientClosed = 499

func (p *Proxy) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	st, _ := r.Context().Value(stateKey{}).(*reqState)
	if st != nil && st.body != nil && st.body.stalled.Load() {
		// The client, not the instance, was too slow. (net/http's
		// server cancels the request on the read error, so this comes
		// before the check for a client that went away.)
		app := st.be.app.key
		p.log.Debug("request body stalled", "app", app, "remote", r.RemoteAddr, "err", err)
		if st.rec.status == 0 {
			w.Header().Set("Connection", "close")
			writeError(w, http.StatusRequestTimeout, "RequestTimeout",
				fmt.Sprintf("app %s: the request body stalled: nothing more of it arrived for %s", app, p.cfg.ClientBodyTimeout), nil)
		}
		return
	}
	if r.Context().Err() != nil {
		if st != nil && st.rec.status == 0 {
			st.rec.status = statusClientClosed
		}
		return
	}
	app, inst, addr := "?", "?", "?"
	if st != nil && st.ep != nil {
		app, inst, addr = st.ep.app.key, st.ep.instance, st.ep.addr
	}
	p.log.Warn("upstream request failed", "app", app, "instance", inst, "addr", addr, "err", err)
	if st != nil && st.rec.status != 0 {
		return // the response has started; nothing more can be said
	}
	status, code := upstreamFailure(err)
	writeError(w, status, code,
		fmt.Sprintf("app %s: instance %s did not answer: %s", app, inst, reason(err)),
		map[string]string{"app": app, "instance": inst})
}

// reason shortens a transport error for a response body.
func reason(err error) string {
	var de *dialError
	switch {
	case errors.As(err, &de):
		return "connect failed (" + de.err.Error() + ")"
	case timedOut(err):
		return "timed out"
	}
	return err.Error()
}

// upstreamFailure is the status and code of a failed exchange with an
// instance: 504 when it timed out, connecting or waiting for the
// answer, as nginx and HAProxy say it; 502 for every other failure.
func upstreamFailure(err error) (int, string) {
	if timedOut(err) {
		return http.StatusGatewayTimeout, "GatewayTimeout"
	}
	return http.StatusBadGateway, "BadGateway"
}

func timedOut(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
}

// errorBody is the load balancer's own answer, shaped as the API's errors
// are (code, reason, message), so one decoder reads both; what it
// concerns (app, namespace, host, instance) is under context.
type errorBody struct {
	Code    int               `json:"code"`
	Reason  string            `json:"reason"`
	Message string            `json:"message"`
	Context map[string]string `json:"context,omitempty"`
}

func writeError(w http.ResponseWriter, status int, reason, msg string, context map[string]string) {
	b, _ := json.Marshal(errorBody{Code: status, Reason: reason, Message: msg, Context: context})
	b = append(b, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(b)
}

func (p *Proxy) finish(st *reqState, r *http.Request, host string, start time.Time) {
	if st.ep != nil {
		st.ep.release()
	}
	d := time.Since(start)
	status := st.rec.status
	// A switch that worked wrote its 101 on the taken-over connection,
	// past the recorder; one that failed was answered (502) through it.
	if st.upgraded && status == 0 {
		status = http.StatusSwitchingProtocols
	} else if status == 0 {
		status = http.StatusOK
	}
	if st.be != nil {
		st.be.app.observe(status, d)
	}
	if !p.cfg.AccessLog || !p.log.Enabled(r.Context(), slog.LevelInfo) {
		return
	}
	app, inst, addr := "", "", ""
	if st.be != nil {
		app = st.be.app.key
	}
	if st.ep != nil {
		inst, addr = st.ep.instance, st.ep.addr
	}
	p.log.LogAttrs(r.Context(), slog.LevelInfo, "request",
		slog.String("method", r.Method),
		slog.String("host", host),
		slog.String("path", r.URL.Path),
		slog.Int("status", status),
		slog.Int64("bytes", st.rec.bytes),
		slog.Duration("duration", d),
		slog.String("app", app),
		slog.String("instance", inst),
		slog.String("upstream", addr),
		slog.Bool("retried", st.retried),
		slog.String("remote", r.RemoteAddr),
		slog.String("proto", r.Proto),
	)
}

// recorder notes the status and size of a response for the access log,
// and bounds the client's reading of it (sendTimeout).
// Unwrap lets http.ResponseController reach Flush and Hijack underneath.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64

	sendTimeout time.Duration // 0: no bound
	sendBy      time.Time     // the write deadline last set
	// perWrite lifts the deadline after each write (HTTP/2; see
	// ServeHTTP).
	perWrite bool
	// closeAfter puts Connection: close on the final answer (see
	// ServeHTTP). It is applied as that answer's head is written, not
	// set on the header map before: a 1xx answer on the way clears the
	// map.
	closeAfter bool
}

// sendSlack is how far a write deadline may lag behind now+timeout
// before it is moved: moving it costs a timer update, and a stream of
// small writes need not pay that for each.
func sendSlack(timeout time.Duration) time.Duration { return min(time.Second, timeout/8) }

// armSend makes sure the client has at least sendTimeout-sendSlack from
// now to take what is written next. It is called before every write, the
// head's included: the head of a long poll's answer may come long after
// the deadline set when the request came in. A deadline that passes
// while nothing is being written does no harm on HTTP/1.
func (r *recorder) armSend(now time.Time) {
	if r.sendTimeout <= 0 || r.sendBy.Sub(now) >= r.sendTimeout-sendSlack(r.sendTimeout) {
		return
	}
	r.sendBy = now.Add(r.sendTimeout)
	if w, ok := r.ResponseWriter.(interface{ SetWriteDeadline(time.Time) error }); ok {
		w.SetWriteDeadline(r.sendBy)
	}
}

// sent lifts a per-write deadline once the write is done.
func (r *recorder) sent() {
	if !r.perWrite || r.sendBy.IsZero() {
		return
	}
	r.sendBy = time.Time{}
	if w, ok := r.ResponseWriter.(interface{ SetWriteDeadline(time.Time) error }); ok {
		w.SetWriteDeadline(time.Time{})
	}
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 && code >= 200 {
		r.status = code
		r.final()
	}
	r.armSend(time.Now())
	r.ResponseWriter.WriteHeader(code)
	r.sent()
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
		r.final()
	}
	r.armSend(time.Now())
	n, err := r.ResponseWriter.Write(b)
	r.sent()
	r.bytes += int64(n)
	return n, err
}

// final prepares the head of the final answer, about to be written.
func (r *recorder) final() {
	if r.closeAfter {
		r.ResponseWriter.Header().Set("Connection", "close")
	}
}

// FlushError flushes under the send deadline, as Write writes: on HTTP/2 a
// flush waits for the client's flow-control window. (ResponseController,
// which ReverseProxy flushes with, finds it before Unwrap.)
func (r *recorder) FlushError() error {
	if r.perWrite {
		r.armSend(time.Now())
		defer r.sent()
	}
	return http.NewResponseController(r.ResponseWriter).Flush()
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// Hijack hands the client's connection over for a tunnel. Bytes the
// client sent right behind its upgrade request, which net/http's reader
// has already taken in, come first from the connection returned:
// ReverseProxy relays from the connection, not from that reader
// (golang/go#80875), and would drop them.
func (r *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(r.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	if n := brw.Reader.Buffered(); n > 0 {
		early, _ := brw.Reader.Peek(n)
		c = &replayConn{Conn: c, pending: bytes.Clone(early)}
		brw.Reader.Discard(n)
	}
	return c, brw, nil
}

// bufferPool recycles the 32 KiB copy buffers of ReverseProxy.
type bufferPool struct{}

var buffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *(buffers.Get().(*[]byte)) }
func (bufferPool) Put(b []byte) { buffers.Put(&b) }

// bodyGuard bounds each wait for more of a request body. The deadline is
// set just before each read, so time the instance spends not taking the
// body does not count against the client; it is lifted once the body
// ends, before net/http's server reads the connection again on its own
// (to notice the client leaving) and would take the deadline for that.
// An HTTP/2 stream's read deadline is a timer that resets the body on its
// own, reading or not, so there (perRead) it is lifted after every read.
//
// The upstream transport may still read (and close) the body after
// ServeHTTP has returned, from its own goroutine: an instance that
// answered before taking all of it. net/http has released the
// ResponseWriter then (an HTTP/2 one is pooled; an HTTP/1 connection is
// reading its next request), so ServeHTTP detaches the guard before it
// returns, and the guard keeps its own stalled flag rather than one in
// the pooled reqState.
type bodyGuard struct {
	io.ReadCloser
	rc      *http.ResponseController
	timeout time.Duration
	perRead bool
	// stalled is set when the client took longer than the timeout to
	// send more of the body.
	stalled atomic.Bool

	mu       sync.Mutex
	detached bool // rc is no longer ours to use
}

func (b *bodyGuard) Read(p []byte) (int, error) {
	// A writer that cannot set deadlines leaves the body unbounded.
	armed := b.setReadDeadline(time.Now().Add(b.timeout))
	n, err := b.ReadCloser.Read(p)
	if armed && (err != nil || b.perRead) {
		if err != nil && timedOut(err) {
			b.stalled.Store(true)
		}
		b.setReadDeadline(time.Time{})
	}
	return n, err
}

func (b *bodyGuard) Close() error {
	b.setReadDeadline(time.Time{})
	return b.ReadCloser.Close()
}

// setReadDeadline sets the request's read deadline, unless the handler
// has returned; it reports whether it did.
func (b *bodyGuard) setReadDeadline(t time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.detached && b.rc.SetReadDeadline(t) == nil
}

// detach lifts the deadline and leaves the ResponseWriter alone from
// now on; ServeHTTP calls it before it returns.
func (b *bodyGuard) detach() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.detached {
		b.detached = true
		b.rc.SetReadDeadline(time.Time{})
	}
}

// keepOpenBody ignores Close; ReverseProxy closes the real body itself when
// the request is done.
type keepOpenBody struct{ io.ReadCloser }

func (keepOpenBody) Close() error { return nil }

// localDialError reports whether a connect failed for want of a local
// resource rather than because of the instance.
func localDialError(err error) bool {
	for _, e := range [...]error{syscall.EMFILE, syscall.ENFILE, syscall.EADDRNOTAVAIL, syscall.ENOBUFS, syscall.ENOMEM} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

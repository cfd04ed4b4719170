package ingress

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// endpoint is one instance address (IP and target port). It outlives
// snapshots: the same object is reused while the instance stays in them,
// so its connection pool, request count and failure history carry over.
type endpoint struct {
	key      string // instance@ip:port: a reused IP is a new endpoint
	addr     string // ip:port
	instance string
	app      *appStats

	inflight atomic.Int64 // requests or TCP flows using this object now
	fails    atomic.Int32 // consecutive connect failures
	ejected  atomic.Int64 // monoNow value until which it gets no traffic
	retired  atomic.Bool  // left every table; draining

	// load counts the requests and flows on the instance address across
	// endpoint objects: after a readiness flap the instance comes back as
	// a new object while requests still run on the retired one, and
	// least-requests must see those. inflight stays per object because
	// draining waits for the retired object's own requests only.
	load *atomic.Int64

	// pool holds the fast path's keep-alive connections and tr the
	// connections of requests that need http.Transport (bodies, upgrades).
	// Both are per endpoint so that a retired endpoint's idle connections
	// can be closed without touching anyone else's.
	pool connPool
	tr   *http.Transport
}

// dialError marks an error from connecting to an instance: the request
// never left the proxy, so it is safe to send it elsewhere.
type dialError struct {
	addr string
	err  error
}

func (e *dialError) Error() string { return fmt.Sprintf("connect to %s: %v", e.addr, e.err) }
func (e *dialError) Unwrap() error { return e.err }

func newEndpoint(cfg *Config, key, addr, instance string, app *appStats) *endpoint {
	ep := &endpoint{key: key, addr: addr, instance: instance, app: app, load: new(atomic.Int64)}
	d := &net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}
	ep.tr = &http.Transport{
		// Proxy stays nil: an HTTP_PROXY in gantry's environment must not
		// capture traffic to instances.
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			c, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				return nil, &dialError{addr: addr, err: err}
			}
			return c, nil
		},
		MaxIdleConnsPerHost:    cfg.MaxIdlePerEndpoint,
		IdleConnTimeout:        cfg.UpstreamIdleTimeout,
		ResponseHeaderTimeout:  cfg.ResponseHeaderTimeout,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: maxResponseHeadBytes,
		// The client negotiated its own encoding with the app; the proxy
		// must not add or strip one.
		DisableCompression: true,
		WriteBufferSize:    16 << 10,
		ReadBufferSize:     16 << 10,
	}
	return ep
}

func (e *endpoint) isEjected(now int64) bool { return e.ejected.Load() > now }

// clockStart anchors monoNow. Ejection deadlines are kept on the
// monotonic clock, so a wall-clock step (NTP, a VM resume) can neither
// eject an endpoint for hours nor cut an ejection short.
var clockStart = time.Now()

// monoNow is the time since the process started, in nanoseconds, read from
// the monotonic clock. It is always positive, so a zero deadline means
// "not ejected".
func monoNow() int64 { return int64(time.Since(clockStart)) }

// acquire counts a request or flow on e.
func (e *endpoint) acquire() {
	e.inflight.Add(1)
	e.load.Add(1)
}

func (e *endpoint) release() {
	e.inflight.Add(-1)
	e.load.Add(-1)
}

// succeeded clears the failure streak; the load-then-store keeps the hot
// path from writing a shared cache line on every request.
func (e *endpoint) succeeded() {
	if e.fails.Load() != 0 {
		e.fails.Store(0)
	}
}

// connectFailed records a connect failure and reports whether it ejected
// the endpoint. now is a monoNow reading.
func (e *endpoint) connectFailed(cfg *Config, now int64) bool {
	if e.fails.Add(1) < int32(cfg.EjectAfter) {
		return false
	}
	e.fails.Store(0)
	e.ejected.Store(now + int64(cfg.EjectFor))
	return true
}

// covers reports whether e is skip itself or another endpoint of the same
// instance and address. A nil skip covers nothing.
func (skip *endpoint) covers(e *endpoint) bool {
	return skip != nil && (e == skip || (e.instance == skip.instance && e.addr == skip.addr))
}

// backend is the set of ready endpoints of one App port, as of one table.
type backend struct {
	key   string // namespace/app/port
	app   *appStats
	port  int
	eps   []*endpoint
	least bool
	next  atomic.Uint64
}

// pick chooses an endpoint other than skip, and other than any endpoint of
// skip's instance: after a readiness flap the instance comes back as a new
// endpoint object, and a retry must not go to the instance that just
// refused the connection. Ejected endpoints are passed
// over, but when every candidate is ejected one is used anyway: ejection
// is a hint from past failures, and trying beats a certain 503.
func (b *backend) pick(now int64, skip *endpoint) *endpoint {
	n := uint64(len(b.eps))
	if n == 0 {
		return nil
	}
	// Draw again while the draw lands on an endpoint that cannot take the
	// request. Moving on to the next one instead would hand an ejected
	// endpoint's turns to its neighbour, which would then get two shares
	// per round (and, under least-requests, win every tie it gave).
	// Concurrent picks can still leave the last draw on an ejected
	// endpoint; the scans below then move on from it.
	start := b.next.Add(1)
	for i := uint64(1); i < n; i++ {
		if e := b.eps[start%n]; !skip.covers(e) && !e.isEjected(now) {
			break
		}
		start = b.next.Add(1)
	}
	if b.least {
		var best *endpoint
		var bestLoad int64
		for i := uint64(0); i < n; i++ {
			e := b.eps[(start+i)%n]
			if skip.covers(e) || e.isEjected(now) {
				continue
			}
			if l := e.load.Load(); best == nil || l < bestLoad {
				best, bestLoad = e, l
			}
		}
		if best != nil {
			return best
		}
	} else {
		for i := uint64(0); i < n; i++ {
			if e := b.eps[(start+i)%n]; !skip.covers(e) && !e.isEjected(now) {
				return e
			}
		}
	}
	for i := uint64(0); i < n; i++ {
		if e := b.eps[(start+i)%n]; !skip.covers(e) {
			return e
		}
	}
	return nil
}

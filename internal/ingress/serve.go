package ingress

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"time"

	"github.com/gantry-dev/gantry/internal/discovery"
)

// apply makes s the served snapshot: it builds the new table, swaps it in,
// then retires the endpoints that are gone. The order matters: once the
// table no longer names an endpoint, no new request can pick it, so
// closing its idle connections afterwards cannot strand a request.
func (p *Proxy) apply(s *discovery.Snapshot) {
	p.mu.Lock()
	defer p.mu.Unlock()
	live := map[string]*endpoint{}
	apps := map[string]*appStats{}
	// An instance back after a readiness flap gets a new endpoint object
	// while its retired one still drains; the new one shares the old one's
	// load, or least-requests would take it for idle.
	drainingByKey := map[string]*endpoint{}
	for e := range p.draining {
		drainingByKey[e.key] = e
	}
	b := &tableBuilder{
		cfg: &p.cfg,
		app: func(ns, name string) *appStats {
			k := ns + "/" + name
			if a := apps[k]; a != nil {
				return a
			}
			a := p.apps[k]
			if a == nil {
				a = p.m.newAppStats(ns, name)
			}
			apps[k] = a
			return a
		},
		endpoint: func(key, addr, instance string, app *appStats) *endpoint {
			if e := live[key]; e != nil {
				return e
			}
			e := p.endpoints[key]
			if e == nil {
				e = newEndpoint(&p.cfg, key, addr, instance, app)
				if old := drainingByKey[key]; old != nil {
					e.load = old.load
				}
			}
			live[key] = e
			return e
		},
	}
	t := b.build(s)
	p.table.Store(t)
	if p.tcp != nil {
		p.tcp.reconcile(s)
		if p.cfg.OnNodePorts != nil {
			if np := p.tcp.published(); !maps.Equal(np, p.nodePorts) {
				p.nodePorts = np
				p.cfg.OnNodePorts(maps.Clone(np))
			}
		}
	}
	for k, e := range p.endpoints {
		if live[k] == nil {
			e.retired.Store(true)
			e.pool.closeIdle(true)
			e.tr.CloseIdleConnections()
			p.draining[e] = 0
		}
	}
	p.endpoints = live
	for k, a := range p.apps {
		if apps[k] == nil {
			p.m.forget(a)
		}
	}
	p.apps = apps

	seen := map[string]bool{}
	for _, c := range b.conflicts {
		k := c.host + c.path + " " + c.loser
		seen[k] = true
		if !p.lastConflicts[k] {
			p.log.Warn("route claimed by two apps; the first keeps it", "host", c.host, "path", c.path, "owner", c.winner, "ignored", c.loser)
		}
	}
	p.lastConflicts = seen
	for _, r := range b.skipped {
		p.log.Debug("route names no http port; skipped", "route", r)
	}
}

// sweep closes idle upstream connections of retired endpoints until they
// have had no request for two sweeps in a row. Two, because a finished
// request's connection goes back to the idle pool asynchronously, just
// after the request is counted as done.
func (p *Proxy) sweep() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for e, idle := range p.draining {
		e.pool.closeIdle(true)
		e.tr.CloseIdleConnections()
		if e.inflight.Load() != 0 {
			p.draining[e] = 0
			continue
		}
		if idle+1 >= 2 {
			delete(p.draining, e)
			continue
		}
		p.draining[e] = idle + 1
	}
}

// expireIdle closes fast-path connections idle longer than
// UpstreamIdleTimeout (http.Transport does this itself for its own).
func (p *Proxy) expireIdle(now time.Time) {
	p.mu.Lock()
	eps := make([]*endpoint, 0, len(p.endpoints))
	for _, e := range p.endpoints {
		eps = append(eps, e)
	}
	p.mu.Unlock()
	cutoff := now.Add(-p.cfg.UpstreamIdleTimeout)
	for _, e := range eps {
		e.pool.expire(cutoff)
	}
}

func (p *Proxy) sampleRates(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, a := range p.apps {
		a.sample(now, p.cfg.RateWindow)
	}
}

// Run follows the source until ctx ends: it applies every snapshot, opens
// and closes node ports for exposed TCP ports, drains retired endpoints
// and samples request rates. On return, TCP listeners are closed and TCP
// flows have had ShutdownTimeout to finish.
func (p *Proxy) Run(ctx context.Context) error {
	if !p.running.CompareAndSwap(false, true) {
		return errors.New("ingress: Run is already running")
	}
	defer p.running.Store(false)
	tb := newTCPBalancer(ctx, p)
	p.mu.Lock()
	p.tcp = tb
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.tcp = nil
		p.mu.Unlock()
		tb.shutdown(p.cfg.ShutdownTimeout)
	}()

	snaps := p.src.Subscribe(ctx)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var sampled, expired time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case s, ok := <-snaps:
			if !ok {
				return nil
			}
			p.apply(s)
		case now := <-tick.C:
			p.sweep()
			if now.Sub(sampled) >= time.Second {
				p.sampleRates(now)
				sampled = now
			}
			if now.Sub(expired) >= 5*time.Second {
				p.expireIdle(now)
				expired = now
			}
		}
	}
}

// ListenAndServe listens on Config.HTTPAddr (and HTTPSAddr when set) and
// serves until ctx ends; see Serve.
func (p *Proxy) ListenAndServe(ctx context.Context) error {
	ln, err := net.Listen("tcp", p.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("ingress: listen on %s: %w", p.cfg.HTTPAddr, err)
	}
	var tln net.Listener
	if p.cfg.HTTPSAddr != "" {
		if tln, err = net.Listen("tcp", p.cfg.HTTPSAddr); err != nil {
			ln.Close()
			return fmt.Errorf("ingress: listen on %s: %w", p.cfg.HTTPSAddr, err)
		}
	}
	return p.Serve(ctx, ln, tln)
}

// Serve serves plain HTTP/1.1 and h2c (prior knowledge) on ln and, when
// tlsLn is not nil, HTTPS with HTTP/2 on tlsLn, and runs Run beside
// them. When ctx ends it stops accepting, lets in-flight requests finish
// for up to ShutdownTimeout, and returns nil; it returns an error if a
// listener fails first.
func (p *Proxy) Serve(ctx context.Context, ln, tlsLn net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if tlsLn != nil && p.cfg.Certificates == nil {
		return errors.New("ingress: HTTPS needs Config.Certificates")
	}
	errc := make(chan error, 3)
	// Requests of the net/http servers run in reqCtx: Shutdown does not
	// wait for connections taken over by an upgrade (WebSocket), so
	// those are cut through it when ShutdownTimeout runs out.
	reqCtx, cutRequests := context.WithCancel(context.Background())
	defer cutRequests()
	base := func(net.Listener) context.Context { return reqCtx }
	plain := p.newServer()
	plain.BaseContext = base
	plain.Protocols = new(http.Protocols)
	plain.Protocols.SetHTTP1(true)
	plain.Protocols.SetUnencryptedHTTP2(true)
	servers := []*http.Server{plain}
	fr := newFront(p, ln)
	go func() { errc <- serveResult("http", plain.Serve(fr.handoff)) }()
	go func() { errc <- serveResult("http", fr.serve()) }()
	if tlsLn != nil {
		if _, port, err := net.SplitHostPort(tlsLn.Addr().String()); err == nil {
			p.httpsPort.Store(&port)
			defer p.httpsPort.Store(nil)
		}
		secure := p.newServer()
		secure.BaseContext = base
		secure.TLSConfig = p.tlsConfig()
		servers = append(servers, secure)
		go func() { errc <- serveResult("https", secure.ServeTLS(tlsLn, "", "")) }()
	}
	runDone := make(chan error, 1)
	go func() { runDone <- p.Run(ctx) }()
	p.log.Info("ingress listening", "http", ln.Addr().String(), "https", addrOf(tlsLn), "appsDomain", p.cfg.AppsDomain)

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	case err = <-runDone:
		runDone <- nil
	}
	sctx, scancel := context.WithTimeout(context.Background(), p.cfg.ShutdownTimeout)
	defer scancel()
	deadline, _ := sctx.Deadline()
	frontDone := make(chan struct{})
	go func() { fr.close(deadline); close(frontDone) }()
	defer func() { <-frontDone }()
	for _, s := range servers {
		if serr := s.Shutdown(sctx); serr != nil {
			s.Close()
		}
	}
	for p.tunnels.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cutRequests()
	cancel()
	<-runDone
	return err
}

func serveResult(name string, err error) error {
	if err == nil || errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("ingress: %s server: %w", name, err)
}

func addrOf(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}

func (p *Proxy) newServer() *http.Server {
	return &http.Server{
		Handler:           p,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       p.cfg.ClientIdleTimeout,
		MaxHeaderBytes:    1 << 20,
		ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
	}
}

// tlsConfig picks a certificate by SNI, for routed hosts only.
func (p *Proxy) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			host := canonicalHost(hello.ServerName)
			if host == "" {
				return nil, errors.New("ingress: the client sent no server name (SNI); connect by host name")
			}
			routeHost, ok := p.table.Load().routeHost(host)
			if !ok {
				return nil, fmt.Errorf("ingress: no app routes host %q", host)
			}
			c, err := p.cfg.Certificates.GetCertificate(host)
			if err != nil {
				err = fmt.Errorf("ingress: certificate for %s: %w", host, err)
				if !errors.Is(err, ErrNoTLSRoute) {
					p.certFailed(routeHost, err)
				}
				return nil, err
			}
			return c, nil
		},
	}
}

// certFailed logs that the routes of routeHost (a host, or a wildcard)
// have no usable certificate (a missing Secret, one without tls.crt and
// tls.key): their clients only see a failed handshake. It logs at most
// once a minute per route host, whatever the names clients send under a
// wildcard, so the log stays bounded by the routes.
func (p *Proxy) certFailed(routeHost string, err error) {
	now := time.Now()
	p.certErrMu.Lock()
	last, seen := p.certErrs[routeHost]
	due := !seen || now.Sub(last) >= time.Minute
	if due {
		if p.certErrs == nil {
			p.certErrs = map[string]time.Time{}
		}
		p.certErrs[routeHost] = now
	}
	p.certErrMu.Unlock()
	if due {
		p.log.Warn("HTTPS handshake failed: no usable certificate for a routed host", "route", routeHost, "err", err)
	}
}

// NodePort returns the node port on which an App's exposed port is
// published, if its listener is open.
func (p *Proxy) NodePort(namespace, app, port string) (int, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tcp == nil {
		return 0, false
	}
	ts := p.tcp.services[namespace+"/"+app+"/"+port]
	if ts == nil {
		return 0, false
	}
	return ts.nodePort, true
}

// NodePorts lists the open node ports by "namespace/app/port".
func (p *Proxy) NodePorts() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tcp == nil {
		return map[string]int{}
	}
	return p.tcp.published()
}

package ingress

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gantry-dev/gantry/internal/discovery"
)

const (
	exposeTCP    = "tcp"
	tcpKeyPrefix = "tcp:"
)

// tcpBalancer publishes exposed App ports on node ports. Its listeners
// belong to Run: reconcile runs under Proxy.mu from apply.
type tcpBalancer struct {
	p   *Proxy
	ctx context.Context

	services  map[string]*tcpService // by namespace/app/port
	allocated map[string]int         // node ports chosen for ports that named none
	// refused holds why a port is not published, so that a snapshot
	// that changes nothing about it does not log it again.
	refused map[string]string

	wg     sync.WaitGroup // accept loops and flows
	flowMu sync.Mutex
	flows  map[*tcpFlow]struct{}
	cut    bool // shutdown cut the flows: later ones are closed at once
}

type tcpService struct {
	key      string
	beKey    string
	nodePort int
	explicit bool
	ln       net.Listener
	accepted prometheus.Counter
	// proxyProtocol is the PROXY protocol version new flows start with
	// ("" for none). A change takes effect on the next connection,
	// without closing the listener.
	proxyProtocol atomic.Value
	// starved is set from the first connection that no instance took
	// until one takes a connection again: clients reconnect in loops,
	// and one line per attempt would flood the log.
	starved atomic.Bool
	// active counts the connections being served; full is set, for the
	// same reason as starved, while they are at Config.MaxTCPFlows.
	active atomic.Int64
	full   atomic.Bool
}

type tcpFlow struct {
	client, up net.Conn

	mu    sync.Mutex
	quiet *quietWatch // from the first half close on
}

// halfClosed starts watching the direction from → to, the one left once
// the other has finished; the first call wins.
func (f *tcpFlow) halfClosed(from, to net.Conn, d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.quiet == nil {
		f.quiet = watchQuiet(from, to, d)
	}
}

func (f *tcpFlow) end() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.quiet != nil {
		f.quiet.stop()
	}
}

// quietWatch closes a half-closed flow once its remaining direction has
// moved nothing for a whole period: no byte arrived from the side still
// sending, and none of what was relayed was acknowledged by the side
// receiving. It reads the kernel's counters (tcpCounters) rather than
// the relay's, so the relay keeps its zero-copy splice, and a relay
// stuck writing to a peer that stopped reading counts as quiet (a
// deadline would cut such a write with bytes still in the splice pipe).
type quietWatch struct {
	from, to net.Conn
	period   time.Duration

	mu      sync.Mutex
	last    uint64
	timer   *time.Timer
	stopped bool
}

func watchQuiet(from, to net.Conn, period time.Duration) *quietWatch {
	w := &quietWatch{from: from, to: to, period: period}
	n, ok := w.progress()
	if !ok {
		return w // not TCP, or not Linux: not watched
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.last = n
	w.timer = time.AfterFunc(period, w.check)
	return w
}

func (w *quietWatch) progress() (uint64, bool) {
	received, _, ok1 := tcpCounters(w.from)
	_, acked, ok2 := tcpCounters(w.to)
	return received + acked, ok1 && ok2
}

func (w *quietWatch) check() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return
	}
	n, ok := w.progress()
	if ok && n != w.last {
		w.last = n
		w.timer.Reset(w.period)
		return
	}
	// Quiet for a period, or the sockets are gone: either way the
	// relay ends on the closed connections.
	w.from.Close()
	w.to.Close()
}

func (w *quietWatch) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
	if w.timer != nil {
		w.timer.Stop()
	}
}

func newTCPBalancer(ctx context.Context, p *Proxy) *tcpBalancer {
	return &tcpBalancer{
		p:         p,
		ctx:       ctx,
		services:  map[string]*tcpService{},
		allocated: map[string]int{},
		refused:   map[string]string{},
		flows:     map[*tcpFlow]struct{}{},
	}
}

type tcpWant struct {
	ns, app, port string
	nodePort      int // 0: allocate
	target        int
	proxyProtocol string
}

// reconcile opens, moves and closes listeners to match s. Flows on a
// listener that closes keep running; only new connections stop.
func (tb *tcpBalancer) reconcile(s *discovery.Snapshot) {
	want := map[string]tcpWant{}
	var order []string
	reserved := map[int]bool{}
	refused := map[string]string{}
	claimed := map[string]int{} // key → the target port that has it
	cfg := &tb.p.cfg
	if s != nil {
		for _, svc := range s.Sorted() {
			for _, pt := range svc.Ports {
				if pt.Expose != exposeTCP {
					continue
				}
				k := svc.Key() + "/" + pt.Name
				if first, dup := claimed[k]; dup {
					// Unnamed ports of one App share a key, and the
					// table keeps the first one's backend under it:
					// publishing another would relay its node port to
					// the first port's target.
					refused[k+"#"+strconv.Itoa(pt.Port)] = fmt.Sprintf("port %d is exposed under the same name (%q) as port %d: name the exposed ports", pt.Port, pt.Name, first)
					continue
				}
				claimed[k] = pt.Port
				if np := pt.NodePort; np != 0 && (np < cfg.NodePortMin || np > cfg.NodePortMax) {
					// Below the range live Gantry's own ports (API, registry,
					// DNS, agent metrics, the bridge's DNS on 53). Some of
					// them open after the load balancer at start-up, so a
					// node port there would keep the server from starting.
					refused[k] = fmt.Sprintf("nodePort %d is outside the node port range %d-%d", np, cfg.NodePortMin, cfg.NodePortMax)
					continue
				}
				want[k] = tcpWant{ns: svc.Namespace, app: svc.Name, port: pt.Name, nodePort: pt.NodePort, target: pt.Port,
					proxyProtocol: pt.ProxyProtocol}
				if _, ok := tb.allocated[k]; !ok && pt.NodePort == 0 && svc.NodePorts[pt.Name] != 0 {
					// Chosen before this process started (the App's
					// status says so): its clients know it. allocate
					// tries it first.
					tb.allocated[k] = svc.NodePorts[pt.Name]
				}
				order = append(order, k)
				if pt.NodePort != 0 {
					reserved[pt.NodePort] = true
				}
			}
		}
	}
	for k, ts := range tb.services {
		w, ok := want[k]
		moved := ok && w.nodePort != 0 && w.nodePort != ts.nodePort
		// A port given one automatically yields it to a port that now
		// asks for it by number, and gets another.
		yields := ok && w.nodePort == 0 && reserved[ts.nodePort]
		// A port that lost its explicit node port keeps the one it has.
		// A new target port number (a rollout that moves the port) keeps
		// the listener: each instance is dialled on its own revision's
		// number (Endpoint.PortFor), and a new listener would refuse the
		// connections of the gap and forget the flows in progress.
		if !ok || moved || yields {
			ts.ln.Close()
			delete(tb.services, k)
			tb.p.log.Info("closed node port", "service", k, "nodePort", ts.nodePort)
		}
		// A port that now names its node port no longer needs the one it
		// was given; kept, it would stay out of every later allocation.
		if !ok || yields || moved {
			delete(tb.allocated, k)
		}
		if ok && tb.services[k] != nil {
			ts.proxyProtocol.Store(w.proxyProtocol)
		}
	}
	inUse := map[int]bool{}
	for _, ts := range tb.services {
		inUse[ts.nodePort] = true
	}
	for _, port := range tb.allocated {
		inUse[port] = true
	}
	for _, k := range order {
		if tb.services[k] != nil {
			continue
		}
		w := want[k]
		var ln net.Listener
		var err error
		port := w.nodePort
		if port != 0 {
			ln, err = tb.listen(port)
		} else {
			port, ln, err = tb.allocate(k, reserved, inUse)
		}
		if err != nil {
			if w.nodePort != 0 {
				refused[k] = fmt.Sprintf("nodePort %d: %v", port, err)
			} else {
				refused[k] = fmt.Sprintf("no node port free in %d-%d: %v", cfg.NodePortMin, cfg.NodePortMax, err)
			}
			continue
		}
		inUse[port] = true
		ts := &tcpService{
			key: k, beKey: tcpKeyPrefix + k, nodePort: port,
			explicit: w.nodePort != 0, ln: ln,
			accepted: tb.p.m.tcpFlows.WithLabelValues(w.ns, w.app, w.port),
		}
		ts.proxyProtocol.Store(w.proxyProtocol)
		tb.services[k] = ts
		tb.p.log.Info("published node port", "service", k, "nodePort", port, "target", w.target)
		tb.wg.Add(1)
		go tb.accept(ts)
	}
	for k, why := range refused {
		if tb.refused[k] != why {
			tb.p.log.Error("cannot publish exposed port", "service", k, "reason", why)
		}
	}
	tb.refused = refused
}

// published lists the open node ports by "namespace/app/port".
func (tb *tcpBalancer) published() map[string]int {
	out := make(map[string]int, len(tb.services))
	for k, ts := range tb.services {
		out[k] = ts.nodePort
	}
	return out
}

func (tb *tcpBalancer) listen(port int) (net.Listener, error) {
	return net.Listen("tcp", net.JoinHostPort(tb.p.cfg.TCPBindAddress, strconv.Itoa(port)))
}

// allocate keeps a port's earlier allocation when it can and otherwise
// takes the lowest free port of the range, skipping ports someone else
// already listens on.
func (tb *tcpBalancer) allocate(key string, reserved, inUse map[int]bool) (int, net.Listener, error) {
	if port, ok := tb.allocated[key]; ok && !reserved[port] {
		if ln, err := tb.listen(port); err == nil {
			return port, ln, nil
		}
	}
	delete(tb.allocated, key)
	var lastErr error = errors.New("node port range exhausted")
	for port := tb.p.cfg.NodePortMin; port <= tb.p.cfg.NodePortMax; port++ {
		if reserved[port] || inUse[port] {
			continue
		}
		ln, err := tb.listen(port)
		if err != nil {
			lastErr = err
			continue
		}
		tb.allocated[key] = port
		return port, ln, nil
	}
	return 0, nil, lastErr
}

func (tb *tcpBalancer) accept(ts *tcpService) {
	defer tb.wg.Done()
	var backoff time.Duration
	for {
		c, err := ts.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off as net/http
			// does rather than spin.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			tb.p.log.Warn("accept failed on node port", "service", ts.key, "err", err)
			select {
			case <-time.After(backoff):
			case <-tb.ctx.Done():
				return
			}
			continue
		}
		backoff = 0
		ts.accepted.Inc()
		if max := int64(tb.p.cfg.MaxTCPFlows); ts.active.Load() >= max {
			reset(c)
			if ts.full.CompareAndSwap(false, true) {
				tb.p.log.Warn("resetting new TCP connections: the node port relays as many flows as it may", "service", ts.key, "max", max)
			}
			continue
		}
		if ts.full.Load() && ts.full.CompareAndSwap(true, false) {
			tb.p.log.Info("the node port takes new TCP connections again", "service", ts.key)
		}
		ts.active.Add(1)
		tb.wg.Add(1)
		go func() {
			defer ts.active.Add(-1)
			tb.serve(ts, c)
		}()
	}
}

// serve connects a client to a ready instance, trying a second one if the
// first refuses, and relays bytes both ways until both sides are done.
func (tb *tcpBalancer) serve(ts *tcpService, client net.Conn) {
	defer tb.wg.Done()
	p := tb.p
	var ep *endpoint
	var up net.Conn
	d := net.Dialer{Timeout: p.cfg.DialTimeout, KeepAlive: 30 * time.Second}
	for attempt := 0; attempt < 2 && up == nil; attempt++ {
		be := p.table.Load().backends[ts.beKey]
		if be == nil {
			reset(client)
			return
		}
		next := p.acquire(be, ep)
		if next == nil {
			break
		}
		c, err := d.DialContext(tb.ctx, "tcp", next.addr)
		if err != nil {
			if tb.ctx.Err() == nil {
				p.connectFailed(next, err)
			}
			next.release()
			ep = next
			continue
		}
		next.succeeded()
		ep, up = next, c
	}
	if up == nil {
		if ts.starved.CompareAndSwap(false, true) {
			why := "no instance is ready"
			if ep != nil {
				why = "every instance tried refused the connection"
			}
			p.log.Warn("resetting TCP connections until an instance takes one", "service", ts.key, "reason", why,
				"client", client.RemoteAddr().String())
		}
		reset(client)
		return
	}
	defer client.Close()
	if ts.starved.Load() && ts.starved.CompareAndSwap(true, false) {
		p.log.Info("an instance takes TCP connections again", "service", ts.key, "instance", ep.instance)
	}
	defer ep.release()
	defer up.Close()
	if v, _ := ts.proxyProtocol.Load().(string); v != "" {
		// A fresh connection's send buffer is empty: this does not block.
		if _, err := up.Write(proxyHeader(v, client.RemoteAddr(), client.LocalAddr())); err != nil {
			return
		}
	}
	f := &tcpFlow{client: client, up: up}
	tb.flowMu.Lock()
	if tb.cut {
		// Its dial finished after shutdown cut the others.
		tb.flowMu.Unlock()
		return
	}
	tb.flows[f] = struct{}{}
	tb.flowMu.Unlock()
	defer func() {
		f.end()
		tb.flowMu.Lock()
		delete(tb.flows, f)
		tb.flowMu.Unlock()
	}()

	done := make(chan struct{})
	go func() {
		defer close(done)
		f.relay(up, client, p.cfg.TCPHalfCloseTimeout)
	}()
	f.relay(client, up, p.cfg.TCPHalfCloseTimeout)
	<-done
}

// reset closes a connection the balancer will not relay with a TCP RST
// rather than a FIN, so the client sees "connection reset" at its first
// read or write instead of a clean end of stream that a protocol might
// take for a server that had nothing to say. kube-proxy refuses such a
// SYN outright; a listener that stays open cannot, and this is the
// nearest it comes.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// relay copies src to dst. A clean end of src is passed on as a half
// close, so protocols that shut down one direction first keep working,
// and from then on the other direction, dst to src, must make progress
// at least every halfClose (quietWatch). A failure aborts both
// connections.
func (f *tcpFlow) relay(dst, src net.Conn, halfClose time.Duration) {
	if _, err := io.Copy(dst, src); err == nil {
		if cw, ok := dst.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
			f.halfClosed(dst, src, halfClose)
			return
		}
	}
	dst.Close()
	src.Close()
}

// shutdown closes the listeners, waits up to timeout for flows to end on
// their own, then cuts the rest.
func (tb *tcpBalancer) shutdown(timeout time.Duration) {
	for k, ts := range tb.services {
		ts.ln.Close()
		delete(tb.services, k)
	}
	done := make(chan struct{})
	go func() {
		tb.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return
	case <-time.After(timeout):
	}
	tb.flowMu.Lock()
	tb.cut = true
	for f := range tb.flows {
		f.client.Close()
		f.up.Close()
	}
	tb.flowMu.Unlock()
	<-done
}

package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	miekg "github.com/miekg/dns"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/discovery"
)

// ErrClosed is returned by Serve and friends after Close.
var ErrClosed = errors.New("dns: server closed")

// Server answers DNS queries from the newest discovery snapshot and
// forwards the rest. It is safe for concurrent use; one Server can serve
// on any number of addresses.
type Server struct {
	cfg Config
	z   zones
	src discovery.Source
	log *slog.Logger
	m   *metrics
	fwd *forwarder
	// sources finds the address to give for ourselves to a client
	// whose query reached a wildcard socket.
	sources *sourceCache
	// tcpWriteTimeout and maxTCPConns bound what one TCP client can hold
	// (see tcpListener); tests shorten them.
	tcpWriteTimeout      time.Duration
	maxTCPConns          int
	maxTCPConnsPerClient int

	// idx is the index of the snapshot answered from; build serialises
	// rebuilding it.
	idx   atomic.Pointer[index]
	build sync.Mutex

	// ctx ends at Close: it stops the snapshot subscription, every Serve
	// call and forwarding in flight.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New returns a Server for cfg that answers from src. It starts watching
// src at once; Close stops it.
func New(cfg Config, src discovery.Source, log *slog.Logger) (*Server, error) {
	if src == nil {
		return nil, fmt.Errorf("dns: a discovery source is required: %w", v1.ErrInvalid)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	ups := cfg.Upstreams
	if ups == nil {
		var err error
		if ups, err = upstreamsFrom(cfg.ResolvConf); err != nil {
			// Service discovery works without upstreams; only names
			// outside our zones fail, and the log says why.
			log.Warn("dns: no upstream resolvers; names outside our zones will be refused", "err", err)
			ups = []string{}
		}
	}
	norm := make([]string, 0, len(ups))
	for _, u := range ups {
		n, err := normalizeUpstream(u)
		if err != nil && cfg.Upstreams == nil {
			// A line of the host's resolv.conf we cannot use costs
			// that upstream only, not the server.
			log.Warn("dns: skipping an upstream resolver from "+cfg.ResolvConf, "err", err)
			continue
		}
		if err != nil {
			return nil, err
		}
		norm = append(norm, n)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg:     cfg,
		z:       newZones(&cfg),
		src:     src,
		log:     log,
		m:       m,
		fwd:     newForwarder(norm, cfg.ForwardTimeout, cfg.ForwardBudget, cfg.MaxConcurrentForwards),
		sources: newSourceCache(),
		ctx:     ctx,
		cancel:  cancel,

		tcpWriteTimeout:      defaultTCPWriteTimeout,
		maxTCPConns:          defaultMaxTCPConns,
		maxTCPConnsPerClient: defaultMaxTCPConnsPerClient,
	}
	s.current()
	snaps := src.Subscribe(ctx)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		// Index each snapshot as it arrives so that queries rarely pay
		// for it. Queries still check the source themselves, which is
		// what makes a publish visible to the very next query.
		for range snaps {
			s.current()
		}
	}()
	return s, nil
}

// Close stops watching the source and ends every Serve call. It does not
// wait for queries being forwarded; they end within ForwardBudget.
func (s *Server) Close() error {
	s.cancel()
	s.wg.Wait()
	return nil
}

// current returns the index of the source's newest snapshot, building it
// if this is the first query to see that snapshot.
func (s *Server) current() *index {
	snap := s.src.Current()
	if idx := s.idx.Load(); idx != nil && idx.snap == snap {
		return idx
	}
	s.build.Lock()
	defer s.build.Unlock()
	// Another query may have built a newer snapshot while this one
	// waited: build the source's newest, never an older one over it.
	snap = s.src.Current()
	if idx := s.idx.Load(); idx != nil && idx.snap == snap {
		return idx
	}
	start := time.Now()
	idx := buildIndex(&s.z, snap, s.idx.Load())
	s.idx.Store(idx)
	s.m.indexBuilds.Inc()
	var rev int64
	if snap != nil {
		rev = snap.Revision
	}
	s.log.Debug("dns: indexed snapshot", "revision", rev, "services", len(idx.services), "took", time.Since(start))
	return idx
}

// Run serves on every address of Config.Listen until ctx ends or one of
// them fails.
func (s *Server) Run(ctx context.Context) error {
	if len(s.cfg.Listen) == 0 {
		return fmt.Errorf("dns: no listen address configured: %w", v1.ErrInvalid)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, len(s.cfg.Listen))
	for _, addr := range s.cfg.Listen {
		go func() { errc <- s.ListenAndServe(ctx, addr) }()
	}
	var first error
	for range s.cfg.Listen {
		if err := <-errc; err != nil && first == nil {
			first = err
			cancel()
		}
	}
	return first
}

// ListenAndServe serves UDP and TCP on addr ("host:port"; port 53 for
// containers, 5353 for people by default) until ctx ends or Close. It
// returns nil after a clean shutdown. A zero port picks a free one, the
// same for both protocols.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	pc, ln, err := listen(addr)
	if err != nil {
		return err
	}
	return s.Serve(ctx, pc, ln)
}

// listen binds UDP and TCP on the same address.
func listen(addr string) (net.PacketConn, net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("dns: listen address %q: %w", addr, err)
	}
	// With port 0 the TCP port must follow the UDP one, which another
	// process may hold: try a few ports.
	for attempt := 0; ; attempt++ {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("dns: listen udp %s: %w", addr, err)
		}
		_, got, _ := net.SplitHostPort(pc.LocalAddr().String())
		ln, err := net.Listen("tcp", net.JoinHostPort(host, got))
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		if port != "0" || attempt == 10 {
			return nil, nil, fmt.Errorf("dns: listen tcp %s: %w", net.JoinHostPort(host, got), err)
		}
	}
}

// Serve answers on already bound sockets until ctx ends or Close; either
// may be nil. It closes them when it returns.
func (s *Server) Serve(ctx context.Context, pc net.PacketConn, ln net.Listener) error {
	var servers []*miekg.Server
	if pc != nil {
		servers = append(servers, &miekg.Server{
			PacketConn: pc,
			Handler:    s,
			// The read buffer: queries with EDNS options can exceed
			// 512 bytes and must not be cut before parsing.
			UDPSize:        miekg.DefaultMsgSize,
			MsgAcceptFunc:  s.accept,
			MsgInvalidFunc: s.invalid,
		})
		defer s.fwd.listen(pc.LocalAddr())()
	}
	if ln != nil {
		servers = append(servers, &miekg.Server{
			Listener:       newTCPListener(ln, s.tcpWriteTimeout, s.maxTCPConns, s.maxTCPConnsPerClient),
			Handler:        s,
			MsgAcceptFunc:  s.accept,
			MsgInvalidFunc: s.invalid,
		})
		defer s.fwd.listen(ln.Addr())()
	}
	if len(servers) == 0 {
		return fmt.Errorf("dns: serve: no socket given: %w", v1.ErrInvalid)
	}
	if s.ctx.Err() != nil {
		for _, srv := range servers {
			closeSocket(srv)
		}
		return ErrClosed
	}
	errc := make(chan error, len(servers))
	started := make(chan struct{}, len(servers))
	for _, srv := range servers {
		srv.NotifyStartedFunc = func() { started <- struct{}{} }
		go func() { errc <- srv.ActivateAndServe() }()
	}
	// Shutting down a server that has not started yet is a no-op in
	// miekg/dns, after which it would start and run forever: wait.
	var err error
	running := 0
	for running < len(servers) && err == nil {
		select {
		case <-started:
			running++
		case err = <-errc:
		}
	}
	if err == nil {
		s.log.Info("dns: serving", "addr", addrOf(pc, ln), "domain", s.z.domain, "apps", s.z.apps)
		select {
		case <-ctx.Done():
		case <-s.ctx.Done():
		case err = <-errc:
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, srv := range servers {
		if serr := srv.ShutdownContext(sctx); serr != nil {
			// Not started (it failed) or already stopped: make sure its
			// socket is released all the same.
			closeSocket(srv)
		}
	}
	if err != nil {
		return fmt.Errorf("dns: serve %s: %w", addrOf(pc, ln), err)
	}
	return nil
}

func closeSocket(srv *miekg.Server) {
	if srv.PacketConn != nil {
		srv.PacketConn.Close()
	}
	if srv.Listener != nil {
		srv.Listener.Close()
	}
}

func addrOf(pc net.PacketConn, ln net.Listener) string {
	if pc != nil {
		return pc.LocalAddr().String()
	}
	return ln.Addr().String()
}

// qrBit is the QR flag in the second 16 bits of the header.
const qrBit = 1 << 15

// accept drops responses (answering one could start a loop between two
// servers) and lets every query through to ServeDNS, whatever its opcode
// or section counts. miekg/dns's default would answer those with a
// FORMERR or NOTIMP of its own that copies the query's flags (TC, RA,
// AD) into the answer and leaves out the OPT record, which tells an EDNS
// client that we do not speak EDNS; answer gets them right instead.
func (s *Server) accept(dh miekg.Header) miekg.MsgAcceptAction {
	if dh.Bits&qrBit != 0 {
		s.m.dropped["response"].Inc()
		return miekg.MsgIgnore
	}
	return miekg.MsgAccept
}

// invalid counts packets that miekg/dns could not parse; it answers
// FORMERR itself when the header was readable, and nothing otherwise so
// that garbage cannot be used for amplification.
func (s *Server) invalid([]byte, error) { s.m.dropped["malformed"].Inc() }

// ServeDNS answers one query; it implements miekg/dns.Handler, so it can
// be mounted in another miekg/dns server or mux.
func (s *Server) ServeDNS(w miekg.ResponseWriter, r *miekg.Msg) {
	if r == nil || r.Response {
		// Answering a response could start a loop between two servers.
		s.m.dropped["response"].Inc()
		return
	}
	tcp := false
	if ra := w.RemoteAddr(); ra != nil {
		_, tcp = ra.(*net.TCPAddr)
	}
	m, opt := s.answer(w, r)
	if tcp && m.Truncated {
		// Only a forwarded answer is truncated here (write cuts ours
		// for UDP alone): from an upstream without TCP, it sends a UDP
		// client to TCP, but a TCP client has nowhere else to go.
		f := new(miekg.Msg)
		f.SetReply(r)
		f.RecursionAvailable = m.RecursionAvailable
		f.Rcode = miekg.RcodeServerFailure
		m = f
	}
	s.write(w, r, m, opt, tcp)
}

// answer builds the response to r, without the OPT record; opt is the
// request's OPT (nil without EDNS0).
func (s *Server) answer(w miekg.ResponseWriter, r *miekg.Msg) (m *miekg.Msg, opt *miekg.OPT) {
	m = new(miekg.Msg)
	m.SetReply(r)
	// RA says whether this client may recurse through us (RFC 1035
	// 4.1.1), as BIND sets it for clients outside allow-recursion.
	mayForward := s.fwd.enabled() && s.forwardsFor(w.RemoteAddr())
	m.RecursionAvailable = mayForward
	nopt := 0
	for _, rr := range r.Extra {
		if o, ok := rr.(*miekg.OPT); ok {
			opt = o
			nopt++
		}
	}
	switch {
	case nopt > 1:
		// RFC 6891 6.1.1; which of the OPTs to answer is anyone's guess.
		m.Rcode = miekg.RcodeFormatError
		return m, nil
	case opt != nil && opt.Version() != 0:
		// RFC 6891 6.1.3: we speak EDNS version 0 only, whatever else
		// the query asks.
		m.Rcode = miekg.RcodeBadVers
		return m, opt
	case r.Opcode != miekg.OpcodeQuery:
		m.Rcode = miekg.RcodeNotImplemented
		return m, opt
	case len(r.Question) != 1:
		m.Rcode = miekg.RcodeFormatError
		return m, opt
	}
	q := r.Question[0]
	switch q.Qtype {
	case miekg.TypeOPT, miekg.TypeTSIG, miekg.TypeTKEY:
		m.Rcode = miekg.RcodeFormatError
		return m, opt
	case miekg.TypeNone, miekg.TypeReserved, miekg.TypeMAILA, miekg.TypeMAILB:
		// Reserved, or obsolete and served by no one (RFC 6895 3.1):
		// no data can answer them, and an upstream may drop them, which
		// would cost the client our whole forwarding budget.
		m.Rcode = miekg.RcodeNotImplemented
		return m, opt
	case miekg.TypeAXFR, miekg.TypeIXFR:
		// No zone transfers: the zone is derived state and secondaries
		// would only serve it stale.
		m.Rcode = miekg.RcodeRefused
		return m, opt
	}
	if q.Qtype >= 128 && q.Qtype < miekg.TypeTKEY {
		// The rest of the meta range, none of them assigned: a query
		// for one is malformed, as for OPT.
		m.Rcode = miekg.RcodeFormatError
		return m, opt
	}
	if q.Qclass != miekg.ClassINET && q.Qclass != miekg.ClassANY {
		m.Rcode = miekg.RcodeRefused
		return m, opt
	}
	// strings.ToLower returns its argument unchanged, without copying,
	// when it is already lower case: the usual query costs nothing here.
	name := strings.ToLower(q.Name)
	idx := s.current()
	// Zones are matched on the presentation form, where an escaped dot
	// inside a label (`x\.gantry.internal.` is the label "x.gantry"
	// under internal.) would pass for a label boundary: they are matched
	// on the labels right of the last one with an escape in it.
	zoned, escaped := plainSuffix(name)
	switch {
	case inZone(zoned, s.z.apps) && (len(s.z.apps) > len(s.z.domain) || !inZone(zoned, s.z.domain)):
		s.answerApps(w, m, idx, name, q)
	case !idx.loaded():
		// The source has not read the store yet (the server has just
		// started, while containers kept running): an empty index
		// would deny names that exist, and an authoritative NXDOMAIN
		// is final for the client and cached; a route host or an
		// instance's reverse name, not known yet, would be forwarded,
		// and the public answer cached for its TTL. SERVFAIL makes the
		// client try again.
		m.Rcode = miekg.RcodeServerFailure
	case inZone(zoned, s.z.domain) && escaped:
		// None of our names has a label with an escape in it (a dot,
		// a backslash, a space), and none lies below one.
		m.Authoritative = true
		m.Rcode = miekg.RcodeNameError
		m.Ns = []miekg.RR{idx.soa}
	case inZone(zoned, s.z.domain):
		s.answerCluster(w, m, idx, name, q)
	case escaped:
		// Not ours, and no route host or reverse name of an instance.
		if !mayForward {
			m.Rcode = miekg.RcodeRefused
			break
		}
		return s.forward(r, opt), opt
	case strings.HasSuffix(name, ".arpa.") && s.answerReverse(m, idx, name, q):
		// The reverse name of an instance's address, answered there;
		// other reverse names go on down, to the upstreams.
	case s.answersRoute(w, idx, name):
		// Every type of a route host is ours to answer: an HTTPS or
		// SVCB record from upstream could lead browsers past the load
		// balancer (address hints, ALPN).
		m.Authoritative = true
		if isAddressType(q.Qtype) {
			m.Answer = s.lbRecords(w, q)
		}
		switch {
		case len(m.Answer) > 0:
		case q.Qtype == miekg.TypeSOA:
			// The route's name is the apex of what is answered (see
			// below), so its SOA is there to be asked for.
			m.Answer = withOwner([]miekg.RR{s.z.soaFor(name, idx.soa.(*miekg.SOA).Serial)}, q.Name, name)
		default:
			// NODATA (a type that is not an address, or the load
			// balancer has none of this family): an SOA lets
			// resolvers cache it (RFC 2308), with the route's name as
			// the apex of what is answered.
			m.Ns = []miekg.RR{s.z.soaFor(name, idx.soa.(*miekg.SOA).Serial)}
		}
	case !mayForward:
		// Not ours, and no upstream for this client: REFUSED, the
		// answer of an authoritative-only server (RFC 8906 3.1.5).
		m.Rcode = miekg.RcodeRefused
	default:
		return s.forward(r, opt), opt
	}
	if q.Qclass == miekg.ClassANY {
		// Answered for IN only: not authoritative for every class
		// (RFC 1035 6.2).
		m.Authoritative = false
	}
	return m, opt
}

// plainSuffix returns the part of name (presentation form, as
// unpacked) right of its last label holding an escape, and whether there
// was one; name itself when none does.
func plainSuffix(name string) (string, bool) {
	if !strings.Contains(name, `\`) {
		return name, false
	}
	starts := miekg.Split(name)
	for i := len(starts) - 1; i >= 0; i-- {
		if !strings.Contains(name[starts[i]:], `\`) {
			continue
		}
		if i+1 < len(starts) {
			return name[starts[i+1]:], true
		}
		return ".", true
	}
	return name, false
}

// answersRoute reports whether name is a route host that Gantry answers
// for this client: every client but an instance of another namespace
// than the route's. A route host outside the apps domain may be any
// public name, and a tenant's route must not redirect other tenants'
// lookups of it (`github.com` to the load balancer): their instances get
// the public answer, forwarded like any other name. A client in the
// instance networks that no snapshot lists is taken for another
// namespace's instance, since it may be one (see
// Config.InstanceNetworks).
func (s *Server) answersRoute(w miekg.ResponseWriter, idx *index, name string) bool {
	owners, ok := idx.routeOwners(name)
	if !ok {
		return false
	}
	client, ok := netip.AddrFromSlice(addrIP(w.RemoteAddr()))
	if !ok {
		return true
	}
	client = client.Unmap()
	clientNS := idx.instanceNamespaces(&s.z, client)
	if len(clientNS) == 0 {
		return !s.inInstanceNetwork(client) || s.isLocal(w, client)
	}
	for _, ns := range clientNS {
		if slices.Contains(owners, ns) {
			return true
		}
	}
	return false
}

// inInstanceNetwork reports whether client lies in Config.InstanceNetworks.
func (s *Server) inInstanceNetwork(client netip.Addr) bool {
	for _, p := range s.cfg.InstanceNetworks {
		if p.Contains(client) {
			return true
		}
	}
	return false
}

// isLocal reports whether client is the address the query reached, i.e.
// this host itself querying its bridge gateway's listener, which lies in
// the instance network but is no instance.
func (s *Server) isLocal(w miekg.ResponseWriter, client netip.Addr) bool {
	local, ok := netip.AddrFromSlice(addrIP(w.LocalAddr()))
	return ok && local.Unmap() == client
}

// forwardsFor reports whether queries from addr may be forwarded.
func (s *Server) forwardsFor(addr net.Addr) bool {
	ap, ok := netip.AddrFromSlice(addrIP(addr))
	if !ok {
		return false
	}
	ap = ap.Unmap()
	for _, p := range s.cfg.ForwardFrom {
		if p.Contains(ap) {
			return true
		}
	}
	return false
}

func isAddressType(t uint16) bool {
	return t == miekg.TypeA || t == miekg.TypeAAAA || t == miekg.TypeANY
}

// answerCluster answers from the index of the cluster zone.
func (s *Server) answerCluster(w miekg.ResponseWriter, m *miekg.Msg, idx *index, name string, q miekg.Question) {
	m.Authoritative = true
	set := idx.lookup(&s.z, name)
	if set == nil && inZone(s.z.apps, name) {
		// The apps zone lies below this name, which therefore exists,
		// with no records of its own: NXDOMAIN would deny the apps zone
		// too (RFC 8020).
		set = &idx.empty
	}
	if set == nil {
		m.Rcode = miekg.RcodeNameError
		m.Ns = []miekg.RR{idx.soa}
		return
	}
	if name == s.z.nameserver {
		// Our own address is wherever the query reached us.
		m.Answer = addrRecords(q, s.localAddrs(w), s.z.ttl)
	} else {
		ans, extra := set.forType(q.Qtype)
		m.Answer = withOwner(s.rotate(ans, q.Qtype), q.Name, name)
		m.Extra = extra
	}
	if len(m.Answer) == 0 {
		m.Extra = nil
		m.Ns = []miekg.RR{idx.soa}
	}
}

// answerApps answers names of the apps domain: every one of them is the
// load balancer.
func (s *Server) answerApps(w miekg.ResponseWriter, m *miekg.Msg, idx *index, name string, q miekg.Question) {
	m.Authoritative = true
	if name == s.z.apps {
		switch q.Qtype {
		case miekg.TypeSOA:
			m.Answer = withOwner([]miekg.RR{idx.appsSOA}, q.Name, name)
		case miekg.TypeNS:
			m.Answer = withOwner([]miekg.RR{idx.appsNS}, q.Name, name)
		case miekg.TypeANY:
			m.Answer = withOwner([]miekg.RR{idx.appsSOA, idx.appsNS}, q.Name, name)
		}
	}
	switch {
	case !isAddressType(q.Qtype):
	case name == "localhost." && name == s.z.apps:
		// The default apps domain's apex holds no App, and localhost
		// itself is the loopback address (RFC 6761 6.3).
		m.Answer = append(m.Answer, addrRecords(q, []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, s.z.ttl)...)
	default:
		m.Answer = append(m.Answer, s.lbRecords(w, q)...)
	}
	if len(m.Answer) == 0 {
		m.Ns = []miekg.RR{idx.appsSOA}
	}
}

// lbRecords returns the load balancer's addresses of q's type, owned by
// q's name as asked.
func (s *Server) lbRecords(w miekg.ResponseWriter, q miekg.Question) []miekg.RR {
	var ips []net.IP
	if s.cfg.LoadBalancer != nil {
		ips = s.cfg.LoadBalancer()
	}
	if len(ips) == 0 {
		ips = s.localAddrs(w)
	}
	return addrRecords(q, ips, s.z.ttl)
}

// addrIP is the IP of a UDP or TCP address, nil for any other.
func addrIP(addr net.Addr) net.IP {
	switch a := addr.(type) {
	case *net.UDPAddr:
		return a.IP
	case *net.TCPAddr:
		return a.IP
	}
	return nil
}

// localAddrs is the address a query arrived on: the listener's for UDP
// bound to one address, the connection's for TCP. A datagram on a
// wildcard socket does not say which address it was sent to; it gets
// the address the host would answer the client from (see sourceCache),
// and 127.0.0.1 if there is no route back.
func (s *Server) localAddrs(w miekg.ResponseWriter) []net.IP {
	if ip := addrIP(w.LocalAddr()); ip != nil && !ip.IsUnspecified() {
		return []net.IP{ip}
	}
	if client, ok := netip.AddrFromSlice(addrIP(w.RemoteAddr())); ok {
		src, err := s.sources.lookup(client.Unmap(), time.Now())
		if err == nil {
			return []net.IP{net.IP(src.WithZone("").AsSlice())}
		}
		s.log.Debug("dns: no route back to the client; answering 127.0.0.1", "client", client, "err", err)
	}
	return []net.IP{net.IPv4(127, 0, 0, 1)}
}

// addrRecords makes A and/or AAAA records (as q asks) for ips.
func addrRecords(q miekg.Question, ips []net.IP, ttl uint32) []miekg.RR {
	var out []miekg.RR
	for _, ip := range ips {
		hdr := miekg.RR_Header{Name: q.Name, Class: miekg.ClassINET, Ttl: ttl}
		if v4 := ip.To4(); v4 != nil {
			if q.Qtype == miekg.TypeA || q.Qtype == miekg.TypeANY {
				hdr.Rrtype = miekg.TypeA
				out = append(out, &miekg.A{Hdr: hdr, A: v4})
			}
		} else if len(ip) == net.IPv6len {
			if q.Qtype == miekg.TypeAAAA || q.Qtype == miekg.TypeANY {
				hdr.Rrtype = miekg.TypeAAAA
				out = append(out, &miekg.AAAA{Hdr: hdr, AAAA: ip})
			}
		}
	}
	return out
}

// rotate returns the addresses (or SRV records) of a name rotated by a
// random number of places, as CoreDNS's loadbalance shuffles them:
// clients dial the first address they get (Go's resolver keeps the order
// of IPv4 answers), so a fixed order would send every client in the
// cluster to the same instance. (A counter shared by every name would
// not do: a client that looks up two services in turn would see each
// always start at the same place.) rrs is shared and is not modified.
func (s *Server) rotate(rrs []miekg.RR, qtype uint16) []miekg.RR {
	n := len(rrs)
	if n < 2 || (qtype != miekg.TypeA && qtype != miekg.TypeAAAA && qtype != miekg.TypeSRV) {
		return rrs
	}
	k := rand.N(n)
	out := make([]miekg.RR, n)
	copy(out, rrs[k:])
	copy(out[n-k:], rrs[:k])
	return out
}

// withOwner returns rrs with the owner name spelled as the client asked
// (qname) where it differs from the index's lower-case name: resolvers
// that randomise case (DNS 0x20) like to see their spelling back. The
// shared records are copied, never changed.
func withOwner(rrs []miekg.RR, qname, name string) []miekg.RR {
	if qname == name || len(rrs) == 0 {
		return rrs
	}
	out := make([]miekg.RR, len(rrs))
	for i, rr := range rrs {
		if rr.Header().Name == name {
			rr = miekg.Copy(rr)
			rr.Header().Name = qname
		}
		out[i] = rr
	}
	return out
}

// forward answers r from the upstream resolvers.
func (s *Server) forward(r *miekg.Msg, opt *miekg.OPT) *miekg.Msg {
	resp, err := s.fwd.exchange(s.ctx, r)
	if err != nil {
		m := new(miekg.Msg)
		m.SetReply(r)
		m.RecursionAvailable = s.fwd.enabled()
		if errors.Is(err, errNoUpstream) {
			m.Rcode = miekg.RcodeRefused
			return m
		}
		s.m.forwardFailed.Inc()
		s.log.Debug("dns: forward failed", "name", r.Question[0].Name, "err", err)
		m.Rcode = miekg.RcodeServerFailure
		return m
	}
	s.m.forwardOK.Inc()
	// The client sees our OPT, not the upstream's, and the question as
	// it asked it.
	resp.Extra = withoutOPT(resp.Extra)
	resp.Question = r.Question
	if opt == nil && resp.Rcode > 0xF {
		// An extended rcode cannot be said without EDNS0.
		resp.Rcode = miekg.RcodeServerFailure
	}
	return resp
}

// packBuffers saves an allocation per answer.
var packBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// write adds the OPT record, truncates to what the transport allows,
// counts and sends m.
func (s *Server) write(w miekg.ResponseWriter, r, m *miekg.Msg, opt *miekg.OPT, tcp bool) {
	limit := miekg.MaxMsgSize
	if opt != nil {
		o := &miekg.OPT{Hdr: miekg.RR_Header{Name: ".", Rrtype: miekg.TypeOPT}}
		o.SetUDPSize(uint16(s.cfg.MaxUDPSize))
		o.SetDo(opt.Do())
		// Full slice expression: appending must copy, never write into
		// an index slice shared with other queries.
		m.Extra = append(m.Extra[:len(m.Extra):len(m.Extra)], o)
		if !tcp {
			limit = min(max(int(opt.UDPSize()), miekg.MinMsgSize), s.cfg.MaxUDPSize)
		}
	} else if !tcp {
		limit = miekg.MinMsgSize
	}
	answers, auth, wasTC := len(m.Answer), len(m.Ns), m.Truncated
	// A cut answer keeps the records that fit, with TC (RFC 2181 9
	// allows the partial RRset): a stub that never retries over TCP,
	// such as musl before 1.2.4, then still gets some addresses rather
	// than none.
	m.Truncate(limit)
	// miekg/dns sets TC when it drops anything, even additional records
	// a client can do without (SRV target addresses); only a cut answer
	// or authority section should send the client to TCP.
	m.Truncated = wasTC || len(m.Answer) < answers || len(m.Ns) < auth

	qtype := uint16(0)
	if len(r.Question) > 0 {
		qtype = r.Question[0].Qtype
	}
	s.m.countQuery(qtype, m.Rcode)

	bp := packBuffers.Get().(*[]byte)
	out, err := m.PackBuffer((*bp)[:cap(*bp)])
	if err != nil {
		packBuffers.Put(bp)
		s.log.Debug("dns: pack answer", "err", err)
		fail := new(miekg.Msg)
		fail.SetRcode(r, miekg.RcodeServerFailure)
		fail.Question = nil
		if out, err = fail.Pack(); err != nil {
			return
		}
		s.send(w, out, tcp)
		return
	}
	s.send(w, out, tcp)
	if cap(out) <= 64*1024 {
		*bp = out[:0]
		packBuffers.Put(bp)
	}
}

// send writes one packed answer. A TCP write that fails (the client
// stopped reading and the write timed out) may have left part of a
// message on the stream, after which nothing more can be framed on it:
// the connection is closed.
func (s *Server) send(w miekg.ResponseWriter, out []byte, tcp bool) {
	if _, err := w.Write(out); err != nil && tcp {
		s.log.Debug("dns: write answer; closing the connection", "client", w.RemoteAddr(), "err", err)
		_ = w.Close()
	}
}

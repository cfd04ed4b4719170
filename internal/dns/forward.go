package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	miekg "github.com/miekg/dns"
)

var (
	// errNoUpstream means forwarding is off or every upstream is ourselves.
	errNoUpstream = errors.New("no upstream resolver")
	// errBusy means too many queries are already waiting on upstreams.
	errBusy = errors.New("too many queries in flight to upstream resolvers")
	// errBudget means a query's forwarding budget ran out.
	errBudget = errors.New("forwarding budget spent")
)

// forwardUDPSize is what we advertise to upstreams: big enough that most
// answers need no TCP retry, small enough not to fragment.
const forwardUDPSize = 1232

// forwarder sends queries outside our zones to the upstream resolvers, in
// order, starting with the one that answered last.
type forwarder struct {
	timeout, budget time.Duration
	// slots holds a token per query in flight upstream.
	slots chan struct{}
	udp   *miekg.Client
	tcp   *miekg.Client

	mu         sync.Mutex
	configured []string
	listening  map[string]int // addresses we serve on, with a use count
	// usable are the configured upstreams that are not ourselves,
	// recomputed whenever a listener comes or goes.
	usable atomic.Pointer[[]string]
	prefer atomic.Uint32
}

func newForwarder(upstreams []string, timeout, budget time.Duration, maxInFlight int) *forwarder {
	f := &forwarder{
		timeout: timeout,
		budget:  budget,
		slots:   make(chan struct{}, maxInFlight),
		// Timeout replaces the client's own 2 s read deadline, which
		// would cut a longer ForwardTimeout short; the context still
		// ends each exchange first.
		udp:        &miekg.Client{Net: "udp", UDPSize: forwardUDPSize, Timeout: timeout},
		tcp:        &miekg.Client{Net: "tcp", Timeout: timeout},
		configured: upstreams,
		listening:  map[string]int{},
	}
	f.recompute()
	return f
}

func (f *forwarder) enabled() bool { return len(*f.usable.Load()) > 0 }

// listen records that we serve on addr (so it is never an upstream) and
// returns a func that forgets it.
func (f *forwarder) listen(addr net.Addr) func() {
	key := addr.String()
	f.mu.Lock()
	f.listening[key]++
	f.recomputeLocked()
	f.mu.Unlock()
	return func() {
		f.mu.Lock()
		if f.listening[key]--; f.listening[key] <= 0 {
			delete(f.listening, key)
		}
		f.recomputeLocked()
		f.mu.Unlock()
	}
}

func (f *forwarder) recompute() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.recomputeLocked()
}

func (f *forwarder) recomputeLocked() {
	var local []net.IP // addresses of this host, looked up only if needed
	usable := make([]string, 0, len(f.configured))
	for _, u := range f.configured {
		if !f.isSelf(u, &local) {
			usable = append(usable, u)
		}
	}
	f.usable.Store(&usable)
}

// isSelf reports whether upstream u is one of our own listeners: the same
// address, or the same port on a wildcard listener and an address of this
// host.
func (f *forwarder) isSelf(u string, local *[]net.IP) bool {
	uh, up, err := net.SplitHostPort(u)
	if err != nil {
		return false
	}
	uip := net.ParseIP(uh)
	for l := range f.listening {
		lh, lp, err := net.SplitHostPort(l)
		if err != nil || lp != up {
			continue
		}
		lip := net.ParseIP(lh)
		if lip == nil || uip == nil {
			continue
		}
		if lip.Equal(uip) {
			return true
		}
		if !lip.IsUnspecified() {
			continue
		}
		if uip.IsLoopback() {
			return true
		}
		if *local == nil {
			*local = hostAddrs()
		}
		for _, a := range *local {
			if a.Equal(uip) {
				return true
			}
		}
	}
	return false
}

func hostAddrs() []net.IP {
	addrs, err := net.InterfaceAddrs()
	out := []net.IP{}
	if err != nil {
		return out
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			out = append(out, n.IP)
		}
	}
	return out
}

// exchange sends r upstream and returns the first usable answer, with
// r's ID. It tries every upstream once within the budget; an upstream
// that times out, fails, or answers SERVFAIL or REFUSED makes way for the
// next.
func (f *forwarder) exchange(ctx context.Context, r *miekg.Msg) (*miekg.Msg, error) {
	ups := *f.usable.Load()
	if len(ups) == 0 {
		return nil, errNoUpstream
	}
	select {
	case f.slots <- struct{}{}:
		defer func() { <-f.slots }()
	default:
		return nil, errBusy
	}
	// Our own query, of the client's question and flags only: records
	// in its other sections are not ours to pass on, and a TSIG cannot
	// be, for we hold no key to sign the query again (miekg/dns would
	// refuse to send it, and the upstream would look dead). A fresh ID
	// per upstream query: the client's ID is guessable by whoever sent
	// it, ours should not be.
	q := &miekg.Msg{
		MsgHdr: miekg.MsgHdr{
			Id:                miekg.Id(),
			Opcode:            r.Opcode,
			RecursionDesired:  r.RecursionDesired,
			CheckingDisabled:  r.CheckingDisabled,
			AuthenticatedData: r.AuthenticatedData,
		},
		Question: []miekg.Question{r.Question[0]},
	}
	// Our own EDNS0: the size we can take without fragments whatever the
	// client offered, and only its DO bit of the client's options.
	do := false
	if opt := r.IsEdns0(); opt != nil {
		do = opt.Do()
	}
	q.SetEdns0(forwardUDPSize, do)
	// One budget for every upstream, each attempt getting the lesser of
	// its timeout and what is left: a stub resolver asks again after 5 s
	// (glibc), and a timeout per dead upstream would add up beyond that.
	ctx, cancel := context.WithTimeoutCause(ctx, f.budget, errBudget)
	defer cancel()
	var errs []error
	var fallback *miekg.Msg
	deadline, _ := ctx.Deadline()
	// A second round asks again the upstreams that did not answer, budget
	// left: one lost datagram must not fail a query that a second would
	// answer (with one upstream, the usual resolv.conf, there is no other
	// to try). An upstream that answered with a failure is not asked
	// again: it would say the same. Two rounds, not more: a dead upstream
	// fails the query after twice its timeout.
	answered := make([]bool, len(ups))
	for round, lost := 0, true; round < 2 && lost && !spent(ctx); round++ {
		lost = false
		start := int(f.prefer.Load())
		for i := range ups {
			n := (start + i) % len(ups)
			if answered[n] {
				continue
			}
			// An attempt is fair when it may run its whole timeout, or
			// the whole budget when that is shorter: its failure is its
			// own.
			fair := (round == 0 && i == 0) || time.Until(deadline) >= f.timeout
			resp, err := f.one(ctx, q, ups[n])
			if err == nil && (resp.Rcode == miekg.RcodeFormatError || resp.Rcode == miekg.RcodeNotImplemented || resp.Rcode == miekg.RcodeRefused) {
				// Even without EDNS0 this upstream cannot answer, or it
				// will not (a policy of its own): try the others, and
				// pass its answer on only if none can.
				if fallback == nil {
					fallback = resp
				}
				err = fmt.Errorf("%s: %s", ups[n], miekg.RcodeToString[resp.Rcode])
			}
			if err != nil {
				errs = append(errs, err)
				if timedOut(err) {
					lost = true
				} else {
					answered[n] = true
				}
				if fair {
					// The next query starts after an upstream that
					// failed, so dead ones do not eat every query's
					// budget. One cut short by the budget keeps its
					// place and gets a whole timeout next time:
					// moving on would let an upstream slow to answer
					// behind dead ones send the next query back to
					// them.
					f.prefer.CompareAndSwap(uint32(n), uint32((n+1)%len(ups)))
				}
				if spent(ctx) {
					cause := context.Cause(ctx)
					if cause == nil {
						cause = errBudget
					}
					errs = append(errs, cause)
					break
				}
				continue
			}
			f.prefer.Store(uint32(n))
			resp.Id = r.Id
			return resp, nil
		}
	}
	if fallback != nil {
		fallback.Id = r.Id
		return fallback, nil
	}
	return nil, fmt.Errorf("forward %s: %w", r.Question[0].Name, errors.Join(errs...))
}

// timedOut reports whether an attempt's error is an upstream that did
// not answer in time (a lost datagram, perhaps), not one that answered.
func timedOut(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// spent reports whether ctx is done or past its deadline. The socket
// deadline taken from ctx can fire before ctx's own timer does, so an
// attempt cut by the budget may return while ctx.Err is still nil.
func spent(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

// one asks one upstream, and asks it once more without EDNS0 if it
// rejects the OPT record.
func (f *forwarder) one(ctx context.Context, q *miekg.Msg, upstream string) (*miekg.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	resp, err := f.send(ctx, q, upstream)
	if err == nil && q.IsEdns0() != nil &&
		(resp.Rcode == miekg.RcodeFormatError || resp.Rcode == miekg.RcodeNotImplemented) {
		// Old servers and middleboxes that do not know EDNS0 answer so
		// (RFC 6891 7), often without the question, hence before the
		// checks below. The client's DO bit cannot be honoured without
		// EDNS0, but its answer is not changed by that: write gives it
		// an OPT only if it sent one.
		plain := q.Copy()
		plain.Extra = withoutOPT(plain.Extra)
		resp, err = f.send(ctx, plain, upstream)
	}
	if err != nil {
		return nil, err
	}
	if len(resp.Question) != 1 || !strings.EqualFold(resp.Question[0].Name, q.Question[0].Name) ||
		resp.Question[0].Qtype != q.Question[0].Qtype || resp.Question[0].Qclass != q.Question[0].Qclass {
		return nil, fmt.Errorf("%s: answer is for another question", upstream)
	}
	if resp.Rcode == miekg.RcodeServerFailure {
		return nil, fmt.Errorf("%s: %s", upstream, miekg.RcodeToString[resp.Rcode])
	}
	return resp, nil
}

// send sends q over UDP, then over TCP if the answer was truncated, and
// checks that what came back is an answer.
func (f *forwarder) send(ctx context.Context, q *miekg.Msg, upstream string) (*miekg.Msg, error) {
	resp, _, err := f.udp.ExchangeContext(ctx, q, upstream)
	// TC sends us to TCP whatever follows the header: some servers cut
	// the datagram mid-record, which does not parse. An answer to our
	// query that does not parse at all is asked for again over TCP too:
	// a server that ignores our EDNS0 size sends more than the read
	// buffer, and the kernel cuts the datagram without a TC bit.
	if resp != nil && resp.Id == q.Id && (resp.Truncated || err != nil) {
		cut, cutErr := resp, err
		resp, _, err = f.tcp.ExchangeContext(ctx, q, upstream)
		if err != nil && cutErr == nil && cut.Truncated && cut.Response && cut.Opcode == q.Opcode {
			// No TCP to this upstream: its truncated answer, passed on
			// with TC, sends the client to TCP with us.
			resp, err = cut, nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", upstream, err)
	}
	if !resp.Response || resp.Opcode != q.Opcode {
		return nil, fmt.Errorf("%s: sent a query back, not an answer", upstream)
	}
	return resp, nil
}

// withoutOPT returns rrs without OPT records, in a new slice: rrs may be
// shared.
func withoutOPT(rrs []miekg.RR) []miekg.RR {
	out := make([]miekg.RR, 0, len(rrs))
	for _, rr := range rrs {
		if rr.Header().Rrtype != miekg.TypeOPT {
			out = append(out, rr)
		}
	}
	return out
}

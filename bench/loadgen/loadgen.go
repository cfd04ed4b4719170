package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Config describes a run. URL and Rate are required.
type Config struct {
	// URL is the target, e.g. http://127.0.0.1:8080/.
	URL string
	// Host overrides the Host header, to reach an app through the ingress
	// without DNS.
	Host string
	// Method defaults to GET.
	Method string
	Header http.Header
	// Body is sent with every request.
	Body []byte
	// Rate is requests per second.
	Rate float64
	// Duration ends the schedule on its own; 0 runs until Stop or until
	// the context of Start ends.
	Duration time.Duration
	// Timeout bounds each request from the moment it is sent, body
	// included. Default 10s.
	Timeout time.Duration
	// MaxInFlight caps outstanding requests when Client is set; a request
	// due while the cap is reached is recorded as failed ("overload")
	// rather than delayed, which would close the loop. Default 10000. (The
	// built-in client has Connections requests out at most.)
	MaxInFlight int
	// Connections is the number of keep-alive connections of the built-in
	// client. A due request waits for a free one, and the wait counts in
	// its latency. Default 100.
	Connections int
	// TLSConfig is used for https URLs by the built-in client.
	TLSConfig *tls.Config
	// MarkerHeader names a response header recorded as Result.Marker, e.g.
	// the header an app sets to say which version it is.
	MarkerHeader string
	// Marker, when set, computes Result.Marker from the response and the
	// first MaxBody bytes of its body instead.
	Marker func(resp *http.Response, body []byte) string
	// MaxBody is how much of a body Marker sees. Default 64 KiB; the rest
	// is read and discarded.
	MaxBody int64
	// OK decides which statuses count as success. Default 200-399.
	OK func(status int) bool
	// EventLoop makes the built-in client send from one OS thread running
	// an epoll loop, woken by a timer when each request is due (Linux
	// only; plain http; MarkerHeader but not Marker). It keeps to the
	// schedule within tens of microseconds, where goroutines woken by Go
	// timers can be up to a millisecond late, and costs a few system calls
	// per request instead of a goroutine wake-up, which matters when the
	// generator shares a small machine with what it measures.
	EventLoop bool
	// Client, when set, sends every request in a goroutine of its own
	// through it instead of the built-in client. The built-in one is a
	// plain HTTP/1.1 client over Connections connections that costs far
	// less CPU per request than net/http's, which matters when the
	// generator shares a machine with what it measures.
	Client *http.Client
}

// Result is one request.
type Result struct {
	Seq int
	// Due is when the schedule said to send it.
	Due time.Time
	// Lag is how late it actually went out: the generator's own delay,
	// including the wait for a free connection.
	Lag time.Duration
	// Latency runs from Due to the end of the body, so a generator or
	// network stall counts against the request that suffered it.
	Latency time.Duration
	Status  int
	// Err is the failure reason ("status 502", "connection refused",
	// "timeout", ...); empty for a success.
	Err    string
	Marker string
	Bytes  int64
	// Retried is set when the first try failed on a kept-alive
	// connection before any answer (EOF, reset) and the request went out
	// again on a new one, as browsers and net/http do: the server closed
	// an idle connection, or dropped a request it had read. The summary
	// counts them, so that a test can tell the two apart.
	Retried bool
}

// notSent is the failure of a request that was due before Stop but that
// no connection was free to send.
const notSent = "not sent: every connection was busy until the run stopped"

// OK reports whether the request succeeded.
func (r Result) OK() bool { return r.Err == "" }

// Results are the outcomes of a run, ordered by Seq.
type Results struct {
	Start time.Time
	End   time.Time
	Rate  float64
	List  []Result
}

type job struct {
	seq int
	due time.Time
	// For the event loop: when the request first went out, and whether
	// this is its second try.
	sent  time.Time
	retry bool
	final bool // no second try, whatever the failure
}

// Run is a running load. Its methods are safe for concurrent use.
type Run struct {
	cfg  Config
	okFn func(int) bool

	// built-in client
	next     atomic.Int64 // the next sequence number a connection takes
	addr     string       // host:port to dial
	tlsConf  *tls.Config
	reqBytes []byte
	reqHead  *http.Request // for ReadResponse: the method decides HEAD semantics

	stop     chan struct{}
	stopOnce sync.Once
	sched    chan struct{} // closed when the schedule ends
	wg       sync.WaitGroup
	inflight atomic.Int64
	start    time.Time

	mu      sync.Mutex
	results []Result
	end     time.Time
	stopAt  time.Time // when Stop was called or the context ended, the first

	notSentOnce sync.Once
}

// Start validates cfg and starts sending. The schedule stops when
// cfg.Duration has passed, when ctx ends, or on Stop; requests already
// due are allowed to finish.
func Start(ctx context.Context, cfg Config) (*Run, error) {
	if cfg.URL == "" {
		return nil, errors.New("loadgen: URL is required")
	}
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("loadgen: URL %q must be absolute http(s), like http://127.0.0.1:8080/", cfg.URL)
	}
	if cfg.Rate <= 0 {
		return nil, fmt.Errorf("loadgen: Rate must be positive (got %v)", cfg.Rate)
	}
	if cfg.EventLoop && cfg.Client != nil {
		return nil, errors.New("loadgen: EventLoop is a way of the built-in client; it cannot be used with Client")
	}
	if cfg.Method == "" {
		cfg.Method = http.MethodGet
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 10000
	}
	if cfg.Connections <= 0 {
		cfg.Connections = 100
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 64 << 10
	}
	r := &Run{
		cfg:   cfg,
		okFn:  cfg.OK,
		stop:  make(chan struct{}),
		sched: make(chan struct{}),
	}
	if r.okFn == nil {
		r.okFn = func(s int) bool { return s >= 200 && s < 400 }
	}
	r.start = time.Now()
	if cfg.Client == nil {
		r.prepare(u)
		if cfg.EventLoop {
			if err := r.startEventLoop(ctx); err != nil {
				return nil, err
			}
			return r, nil
		}
		for i := 0; i < cfg.Connections; i++ {
			r.wg.Add(1)
			go r.worker(ctx)
		}
		go func() {
			r.wg.Wait()
			close(r.sched)
		}()
		go func() {
			// The run ends when its context does, not when a later Stop
			// looks at it: what fell due in between was never meant to go.
			select {
			case <-ctx.Done():
				r.markStop()
			case <-r.sched:
			}
		}()
		return r, nil
	}
	go r.schedule(ctx)
	return r, nil
}

// prepare builds the request bytes the built-in client sends every time.
func (r *Run) prepare(u *url.URL) {
	host := u.Host
	r.addr = host
	if u.Port() == "" {
		if u.Scheme == "https" {
			r.addr = net.JoinHostPort(u.Hostname(), "443")
		} else {
			r.addr = net.JoinHostPort(u.Hostname(), "80")
		}
	}
	if r.cfg.Host != "" {
		host = r.cfg.Host
	}
	if u.Scheme == "https" {
		r.tlsConf = &tls.Config{}
		if r.cfg.TLSConfig != nil {
			r.tlsConf = r.cfg.TLSConfig.Clone()
		}
		if r.tlsConf.ServerName == "" {
			r.tlsConf.ServerName, _, _ = strings.Cut(host, ":")
		}
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", r.cfg.Method, u.RequestURI(), host)
	if r.cfg.Header.Get("User-Agent") == "" {
		b.WriteString("User-Agent: gantry-loadgen\r\n")
	}
	r.cfg.Header.Write(&b)
	if len(r.cfg.Body) > 0 || r.cfg.Method == http.MethodPost || r.cfg.Method == http.MethodPut || r.cfg.Method == http.MethodPatch {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(r.cfg.Body))
	}
	b.WriteString("\r\n")
	b.Write(r.cfg.Body)
	r.reqBytes = b.Bytes()
	r.reqHead = &http.Request{Method: r.cfg.Method}
}

// dueAt is when request seq is due, or false once the run's Duration
// is over.
func (r *Run) dueAt(seq int) (time.Time, bool) {
	offset := time.Duration(float64(seq) * float64(time.Second) / r.cfg.Rate)
	if r.cfg.Duration > 0 && offset >= r.cfg.Duration {
		return time.Time{}, false
	}
	return r.start.Add(offset), true
}

// wait sleeps until due; false means the run was stopped.
func (r *Run) wait(ctx context.Context, timer *time.Timer, due time.Time) bool {
	if d := time.Until(due); d > 0 {
		timer.Reset(d)
		select {
		case <-timer.C:
			return true
		case <-r.stop:
		case <-ctx.Done():
		}
		timer.Stop()
		return false
	}
	// Behind schedule: go at once, but still notice a stop.
	select {
	case <-r.stop:
		return false
	case <-ctx.Done():
		return false
	default:
		return true
	}
}

// schedule starts a goroutine per request for Config.Client.
func (r *Run) schedule(ctx context.Context) {
	defer close(r.sched)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for i := 0; ; i++ {
		due, ok := r.dueAt(i)
		if !ok || !r.wait(ctx, timer, due) {
			return
		}
		if r.inflight.Load() >= int64(r.cfg.MaxInFlight) {
			r.record(Result{Seq: i, Due: due, Err: "overload: generator in-flight limit reached"})
			continue
		}
		r.inflight.Add(1)
		r.wg.Add(1)
		go r.do(i, due)
	}
}

// worker is one connection of the built-in client. Workers share the
// schedule: a free one takes the next request number and sends it when it
// is due, so a request waits only if every connection is busy, and then
// its latency, counted from when it was due, shows the wait. Each worker
// sleeps on its own timer, so a request costs one wake-up, not a
// scheduler's and a worker's.
type worker struct {
	r    *Run
	conn net.Conn
	br   *bufio.Reader
	buf  []byte
}

func (r *Run) worker(ctx context.Context) {
	defer r.wg.Done()
	w := &worker{r: r, buf: make([]byte, r.cfg.MaxBody)}
	defer w.close()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		seq := int(r.next.Add(1) - 1)
		due, ok := r.dueAt(seq)
		if !ok {
			return
		}
		// Overdue when this connection came free: it waited on busy
		// connections.
		late := !time.Now().Before(due)
		if !r.wait(ctx, timer, due) {
			r.markStop()
			// Only a request that was kept waiting by busy connections
			// failed to go; one whose due time merely raced the stop (the
			// timer and the stop firing together) was not the target's
			// doing, and is left out.
			if late && r.dueBeforeStop(due) {
				r.record(Result{Seq: seq, Due: due, Err: notSent})
			}
			return
		}
		r.inflight.Add(1)
		res := w.do(job{seq: seq, due: due})
		r.inflight.Add(-1)
		r.record(res)
	}
}

func (w *worker) close() {
	if w.conn != nil {
		w.conn.Close()
		w.conn = nil
	}
}

func (w *worker) dial(deadline time.Time) error {
	d := net.Dialer{Deadline: deadline, KeepAlive: 30 * time.Second}
	c, err := d.Dial("tcp", w.r.addr)
	if err != nil {
		return err
	}
	if w.r.tlsConf != nil {
		tc := tls.Client(c, w.r.tlsConf)
		tc.SetDeadline(deadline)
		if err := tc.Handshake(); err != nil {
			c.Close()
			return err
		}
		c = tc
	}
	w.conn = c
	if w.br == nil {
		w.br = bufio.NewReaderSize(c, 16<<10)
	} else {
		w.br.Reset(c)
	}
	return nil
}

func (w *worker) do(j job) Result {
	r := w.r
	res := Result{Seq: j.seq, Due: j.due}
	sent := time.Now()
	res.Lag = sent.Sub(j.due)
	deadline := sent.Add(r.cfg.Timeout)
	for attempt := 0; ; attempt++ {
		reused := w.conn != nil
		if !reused {
			if err := w.dial(deadline); err != nil {
				res.Err = Reason(err)
				break
			}
		}
		w.conn.SetDeadline(deadline)
		_, err := w.conn.Write(r.reqBytes)
		var resp *http.Response
		if err == nil {
			resp, err = http.ReadResponse(w.br, r.reqHead)
		}
		if err != nil {
			w.close()
			// A kept-alive connection the server closed while idle: send
			// again on a new one, as browsers and net/http do.
			if reused && attempt == 0 && staleConn(err) && idempotent(r.cfg.Method) {
				res.Retried = true
				continue
			}
			res.Err = Reason(err)
			break
		}
		res.Status = resp.StatusCode
		// Not io.ReadFull: it reports a body shorter than the buffer and
		// a body cut short (the body's own io.ErrUnexpectedEOF) alike.
		head, ended := 0, false
		for head < len(w.buf) && !ended {
			var n int
			n, err = resp.Body.Read(w.buf[head:])
			head += n
			if err != nil {
				ended = true
				if err == io.EOF {
					err = nil
				}
			}
		}
		res.Bytes = int64(head)
		if !ended {
			var n int64
			n, err = io.Copy(io.Discard, resp.Body)
			res.Bytes += n
		}
		resp.Body.Close()
		if err != nil || resp.Close {
			w.close()
		}
		switch {
		case r.cfg.Marker != nil:
			res.Marker = r.cfg.Marker(resp, w.buf[:head])
		case r.cfg.MarkerHeader != "":
			res.Marker = resp.Header.Get(r.cfg.MarkerHeader)
		}
		switch {
		case err != nil:
			res.Err = "body: " + Reason(err)
		case !r.okFn(resp.StatusCode):
			res.Err = fmt.Sprintf("status %d", resp.StatusCode)
		}
		break
	}
	res.Latency = time.Since(j.due)
	return res
}

func staleConn(err error) bool {
	// ReadResponse reports an empty reply as io.ErrUnexpectedEOF.
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// do sends one request through Config.Client.
func (r *Run) do(seq int, due time.Time) {
	defer r.wg.Done()
	defer r.inflight.Add(-1)
	res := Result{Seq: seq, Due: due}
	sent := time.Now()
	res.Lag = sent.Sub(due)
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.Timeout)
	defer cancel()
	var body io.Reader
	if len(r.cfg.Body) > 0 {
		body = bytes.NewReader(r.cfg.Body)
	}
	req, err := http.NewRequestWithContext(ctx, r.cfg.Method, r.cfg.URL, body)
	if err != nil {
		res.Err = "request: " + err.Error()
		r.record(res)
		return
	}
	if r.cfg.Host != "" {
		req.Host = r.cfg.Host
	}
	for k, vs := range r.cfg.Header {
		req.Header[k] = vs
	}
	resp, err := r.cfg.Client.Do(req)
	if err != nil {
		res.Latency = time.Since(due)
		res.Err = Reason(err)
		r.record(res)
		return
	}
	res.Status = resp.StatusCode
	head, err := io.ReadAll(io.LimitReader(resp.Body, r.cfg.MaxBody))
	res.Bytes = int64(len(head))
	if err == nil {
		var n int64
		n, err = io.Copy(io.Discard, resp.Body)
		res.Bytes += n
	}
	resp.Body.Close()
	res.Latency = time.Since(due)
	switch {
	case r.cfg.Marker != nil:
		res.Marker = r.cfg.Marker(resp, head)
	case r.cfg.MarkerHeader != "":
		res.Marker = resp.Header.Get(r.cfg.MarkerHeader)
	}
	switch {
	case err != nil:
		res.Err = "body: " + Reason(err)
	case !r.okFn(resp.StatusCode):
		res.Err = fmt.Sprintf("status %d", resp.StatusCode)
	}
	r.record(res)
}

func (r *Run) record(res Result) {
	r.mu.Lock()
	r.results = append(r.results, res)
	r.mu.Unlock()
}

// Reason names the cause of a failed request in a few words, so failures
// group well in a summary.
func Reason(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.EPIPE):
		return "broken pipe"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed (EOF)"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	msg := err.Error()
	if len(msg) > 120 {
		msg = msg[:120]
	}
	return msg
}

// Stop ends the schedule, waits for requests in flight (each is bounded by
// Config.Timeout) and returns every result.
func (r *Run) Stop() *Results {
	r.stopOnce.Do(func() {
		r.markStop()
		close(r.stop)
	})
	return r.Wait()
}

// markStop notes when the run was stopped (by Stop or its context),
// the first time only.
func (r *Run) markStop() {
	r.mu.Lock()
	if r.stopAt.IsZero() {
		r.stopAt = time.Now()
	}
	r.mu.Unlock()
}

// dueBeforeStop reports whether a request due then should have gone out
// before Stop.
func (r *Run) dueBeforeStop(due time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return !r.stopAt.IsZero() && due.Before(r.stopAt)
}

// Wait waits for the schedule to end on its own (Duration or the context)
// and for requests in flight, and returns every result.
func (r *Run) Wait() *Results {
	<-r.sched
	r.wg.Wait()
	if r.cfg.Client == nil && !r.cfg.EventLoop {
		// Requests due before the stop that no connection was free to
		// take (every one was stuck) are failures too, not missing rows;
		// once, however many callers wait.
		r.notSentOnce.Do(func() {
			for seq := int(r.next.Load()); ; seq++ {
				due, ok := r.dueAt(seq)
				if !ok || !r.dueBeforeStop(due) {
					break
				}
				r.record(Result{Seq: seq, Due: due, Err: notSent})
				r.next.Store(int64(seq + 1))
			}
		})
	}
	r.mu.Lock()
	if r.end.IsZero() {
		r.end = time.Now()
	}
	r.mu.Unlock()
	return r.Snapshot()
}

// Done is closed when the schedule has ended; results of requests still
// in flight may follow.
func (r *Run) Done() <-chan struct{} { return r.sched }

// InFlight is the number of requests awaiting a response.
func (r *Run) InFlight() int { return int(r.inflight.Load()) }

// Snapshot returns the results recorded so far, ordered by Seq.
func (r *Run) Snapshot() *Results {
	r.mu.Lock()
	list := append([]Result(nil), r.results...)
	end := r.end
	r.mu.Unlock()
	if end.IsZero() {
		end = time.Now()
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Seq < list[j].Seq })
	return &Results{Start: r.start, End: end, Rate: r.cfg.Rate, List: list}
}

// Between returns the results due in [from, to); a zero bound is open.
func (rs *Results) Between(from, to time.Time) *Results {
	out := &Results{Start: rs.Start, End: rs.End, Rate: rs.Rate}
	for _, r := range rs.List {
		if (!from.IsZero() && r.Due.Before(from)) || (!to.IsZero() && !r.Due.Before(to)) {
			continue
		}
		out.List = append(out.List, r)
	}
	if !from.IsZero() && from.After(out.Start) {
		out.Start = from
	}
	if !to.IsZero() && to.Before(out.End) {
		out.End = to
	}
	return out
}

// Since returns the results due at or after t.
func (rs *Results) Since(t time.Time) *Results { return rs.Between(t, time.Time{}) }

// Failed returns the failed results.
func (rs *Results) Failed() []Result {
	var out []Result
	for _, r := range rs.List {
		if !r.OK() {
			out = append(out, r)
		}
	}
	return out
}

// Summary condenses results. Latency percentiles cover successful
// requests only.
type Summary struct {
	// Sent counts the results: every request due, including those that
	// failed as not sent.
	Sent     int
	OK       int
	Failed   int
	Failures map[string]int // reason → count
	Markers  map[string]int // marker → count, over successful requests
	P50      time.Duration
	P90      time.Duration
	P99      time.Duration
	P999     time.Duration
	Max      time.Duration
	// MaxLag is the worst delay of the generator itself; when it nears
	// the latencies, the generator, not the target, was the bottleneck.
	MaxLag   time.Duration
	Duration time.Duration
	// Rate is the achieved send rate: the requests that went out over the
	// span of the times they actually went out (not when they were due),
	// so a generator that fell behind shows a lower rate.
	Rate float64
	// Retried counts requests that went out a second time (Result.Retried).
	Retried int
}

// Summary computes the summary of rs.
func (rs *Results) Summary() Summary {
	s := Summary{Sent: len(rs.List), Failures: map[string]int{}, Markers: map[string]int{}}
	lat := make([]time.Duration, 0, len(rs.List))
	var first, last time.Time
	went := 0
	for _, r := range rs.List {
		if r.Lag > s.MaxLag {
			s.MaxLag = r.Lag
		}
		if r.Retried {
			s.Retried++
		}
		if r.Err != notSent {
			at := r.Due.Add(r.Lag)
			if went == 0 || at.Before(first) {
				first = at
			}
			if went == 0 || at.After(last) {
				last = at
			}
			went++
		}
		if !r.OK() {
			s.Failed++
			s.Failures[r.Err]++
			continue
		}
		s.OK++
		s.Markers[r.Marker]++
		lat = append(lat, r.Latency)
	}
	s.Duration = rs.End.Sub(rs.Start)
	if span := last.Sub(first); went > 1 && span > 0 {
		s.Rate = float64(went-1) / span.Seconds()
	}
	if len(lat) > 0 {
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		q := func(p float64) time.Duration {
			i := int(p*float64(len(lat))+0.5) - 1
			return lat[max(0, min(i, len(lat)-1))]
		}
		s.P50, s.P90, s.P99, s.P999, s.Max = q(0.50), q(0.90), q(0.99), q(0.999), lat[len(lat)-1]
	}
	return s
}

// String renders the summary on a few lines.
func (s Summary) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "sent %d at %.1f/s over %s: ok %d, failed %d", s.Sent, s.Rate, s.Duration.Round(time.Millisecond), s.OK, s.Failed)
	if s.Retried > 0 {
		fmt.Fprintf(&b, ", retried on a new connection %d", s.Retried)
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "latency p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (generator lag max %s)\n",
		fmtDur(s.P50), fmtDur(s.P90), fmtDur(s.P99), fmtDur(s.P999), fmtDur(s.Max), fmtDur(s.MaxLag))
	for _, k := range sortedKeys(s.Failures) {
		fmt.Fprintf(&b, "failed: %s ×%d\n", k, s.Failures[k])
	}
	if len(s.Markers) > 1 || (len(s.Markers) == 1 && s.Markers[""] == 0) {
		for _, k := range sortedKeys(s.Markers) {
			fmt.Fprintf(&b, "marker %q ×%d\n", k, s.Markers[k])
		}
	}
	return b.String()
}

func fmtDur(d time.Duration) string {
	return fmt.Sprintf("%.3fms", float64(d)/float64(time.Millisecond))
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

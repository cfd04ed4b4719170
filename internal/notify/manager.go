package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/informer"
	"github.com/gantry-dev/gantry/internal/store"
)

// SecretFunc reads one key of a Secret, for notifiers whose URL comes from
// a secret (urlFrom). The server backs it with the secrets package.
type SecretFunc func(ctx context.Context, ns string, ref v1.SecretRef) (string, error)

// Retry says how hard a worker tries before it gives a message up.
type Retry struct {
	// Attempts is the number of tries per message, the first included.
	Attempts int
	// Base is the backoff after the first failure; it doubles after each
	// further one up to Max, and each wait is jittered to between half
	// and all of it so that many notifiers do not retry in step.
	Base time.Duration
	Max  time.Duration
	// Timeout bounds each attempt (connect, send, answer).
	Timeout time.Duration
}

// DefaultRetry tries 6 times over 15 to 31 s (waits of 1, 2, 4, 8 and 16 s,
// each jittered to between half and all of it), 10 s per attempt.
func DefaultRetry() Retry {
	return Retry{Attempts: 6, Base: time.Second, Max: 30 * time.Second, Timeout: 10 * time.Second}
}

// Defaults for Manager fields left zero.
const (
	DefaultQueueSize   = 64
	DefaultIdleTimeout = 5 * time.Minute
	inboxSize          = 1024
	maxErrorBody       = 512
)

// Manager delivers notifications. Fill in the fields, call Run in a
// goroutine, and call Send from anywhere: Send never blocks.
type Manager struct {
	Store *store.Store
	Log   *slog.Logger
	// Metrics may be nil (nothing is counted).
	Metrics *Metrics
	// Guard refuses private and API-server targets; nil refuses the
	// fixed private ranges only.
	Guard *Guard
	// Secrets resolves urlFrom; nil makes such notifiers fail with a
	// clear error.
	Secrets SecretFunc
	// ClusterURL is put into every message (and links Slack titles).
	ClusterURL string
	// Apps may be an informer shared with other components (nil: a
	// private one).
	Apps *informer.Informer[*v1.App]
	// Retry defaults to DefaultRetry.
	Retry Retry
	// QueueSize bounds each notifier's queue (default 64), and so its
	// share of the outbox; when it is full the oldest message is
	// dropped.
	QueueSize int
	// IdleTimeout ends a notifier's worker after that long without work
	// (default 5 min); the next message starts a new one.
	IdleTimeout time.Duration
	Now         func() time.Time

	once       sync.Once
	inbox      chan envelope
	notifiers  *informer.Informer[*v1.Notifier]
	namespaces *informer.Informer[*v1.Namespace]
	apps       *informer.Informer[*v1.App]
	strict     *http.Client
	open       *http.Client
	outbox     string // key prefix of the pending messages in the store

	mu      sync.Mutex
	workers map[string]*worker
	runCtx  context.Context
	wg      sync.WaitGroup

	seenMu  sync.Mutex
	seen    map[string]struct{}
	seenLog []string
}

type envelope struct {
	ns    string
	names []string
	msg   Message
}

func (m *Manager) init() {
	m.once.Do(func() {
		if m.Log == nil {
			m.Log = slog.New(slog.DiscardHandler)
		}
		if m.Now == nil {
			m.Now = time.Now
		}
		d := DefaultRetry()
		if m.Retry.Attempts <= 0 {
			m.Retry.Attempts = d.Attempts
		}
		if m.Retry.Base <= 0 {
			m.Retry.Base = d.Base
		}
		if m.Retry.Max <= 0 {
			m.Retry.Max = d.Max
		}
		if m.Retry.Timeout <= 0 {
			m.Retry.Timeout = d.Timeout
		}
		if m.QueueSize <= 0 {
			m.QueueSize = DefaultQueueSize
		}
		if m.IdleTimeout <= 0 {
			m.IdleTimeout = DefaultIdleTimeout
		}
		if m.Guard == nil {
			m.Guard = &Guard{}
		}
		m.inbox = make(chan envelope, inboxSize)
		m.workers = map[string]*worker{}
		m.notifiers = informer.New[*v1.Notifier](m.Store, m.Log)
		m.namespaces = informer.New[*v1.Namespace](m.Store, m.Log)
		if m.apps = m.Apps; m.apps == nil {
			m.apps = informer.New[*v1.App](m.Store, m.Log)
		}
		m.apps.OnChange(m.appChanged)
		m.strict = newClient(m.Guard)
		m.open = newClient(nil)
		if m.Store != nil {
			m.outbox = outboxPrefix(m.Store)
		}
	})
}

// newClient builds an HTTP client for webhooks. With a guard, every
// connection's resolved address is checked just before connect. Two
// clients, not one with a per-request switch, because idle connections
// are pooled by host and port: a connection a permitted namespace opened
// to a private address must never be reused for one that is not.
func newClient(g *Guard) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	if g != nil {
		d.Control = g.control
	}
	t := &http.Transport{
		// No proxy from the environment: the guard must see the
		// address that is actually reached.
		Proxy:                 nil,
		DialContext:           d.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          32,
		MaxIdleConnsPerHost:   2,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: 10 * time.Second,
	}
	return &http.Client{
		Transport: t,
		// A webhook has no business redirecting; following one would
		// also turn the POST into a GET.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Send queues msg for the named notifiers of namespace ns, or, when names
// is empty, for every notifier of ns whose events select msg's kind.
// Named notifiers get the message whatever their events say: naming them
// is the stronger statement. Send never blocks; when the queue of all
// pending sends is full the message is dropped and counted.
func (m *Manager) Send(ctx context.Context, ns string, names []string, msg Message) {
	m.init()
	msg.Namespace = ns
	msg.complete(m.Now(), m.ClusterURL)
	select {
	case m.inbox <- envelope{ns: ns, names: append([]string(nil), names...), msg: msg}:
	default:
		m.Metrics.count("", ResultDropped)
		m.Log.Warn("notification inbox full; dropping", "ns", ns, "kind", msg.Kind, "status", msg.Status)
	}
}

// Run runs the informers, the dispatcher and the workers until ctx ends,
// and waits for them.
func (m *Manager) Run(ctx context.Context) {
	m.init()
	var inf sync.WaitGroup
	for _, run := range []func(context.Context){m.notifiers.Run, m.namespaces.Run, m.apps.Run} {
		inf.Add(1)
		go func() { defer inf.Done(); run(ctx) }()
	}
	inf.Add(1)
	go func() { defer inf.Done(); m.watchEvents(ctx) }()
	for _, ch := range []<-chan struct{}{m.notifiers.Synced(), m.namespaces.Synced()} {
		select {
		case <-ctx.Done():
			inf.Wait()
			return
		case <-ch:
		}
	}
	m.mu.Lock()
	m.runCtx = ctx
	m.mu.Unlock()
	// What an earlier run left undelivered goes first, so that it keeps
	// its place before anything sent since.
	for {
		err := m.restore(ctx)
		if err == nil || ctx.Err() != nil {
			break
		}
		m.Log.Warn("restore pending notifications; retrying", "err", err)
		informer.Sleep(ctx, time.Second)
	}
	for {
		select {
		case <-ctx.Done():
			m.wg.Wait()
			inf.Wait()
			return
		case env := <-m.inbox:
			m.dispatch(env)
		}
	}
}

// dispatch turns one send into one queued message per target notifier.
func (m *Manager) dispatch(env envelope) {
	var targets []*v1.Notifier
	if len(env.names) > 0 {
		for _, name := range env.names {
			n, ok := m.notifiers.Get(env.ns, name)
			if !ok {
				m.Metrics.count("", ResultDropped)
				m.Log.Warn("notification names a notifier that does not exist", "ns", env.ns, "notifier", name, "kind", env.msg.Kind, "rule", env.msg.Rule)
				continue
			}
			targets = append(targets, n)
		}
	} else {
		targets = m.notifiers.List(func(n *v1.Notifier) bool {
			return n.Metadata.Namespace == env.ns && wants(n.Spec, env.msg.Kind)
		})
	}
	for _, n := range targets {
		it := item{msg: env.msg, key: m.persist(n, env.msg)}
		if dropped := m.enqueue(n, it); dropped != "" {
			m.unpersist(context.Background(), dropped)
		}
	}
}

// worker delivers one notifier's messages in order, one at a time, so
// that a resolved notification never overtakes its firing one.
type worker struct {
	ns, name, typ string
	q             []item
	wake          chan struct{}
}

// item is one queued message and the key of its outbox entry ("" when
// it could not be written).
type item struct {
	msg Message
	key string
}

// enqueue queues it for n and returns the outbox key of a message it
// dropped to make room, for the caller to delete outside the lock.
func (m *Manager) enqueue(n *v1.Notifier, it item) (dropped string) {
	key := n.Metadata.Key()
	m.mu.Lock()
	defer m.mu.Unlock()
	w, ok := m.workers[key]
	if !ok {
		w = &worker{ns: n.Metadata.Namespace, name: n.Metadata.Name, typ: n.Spec.Type, wake: make(chan struct{}, 1)}
		m.workers[key] = w
		m.wg.Add(1)
		go m.work(m.runCtx, key, w)
	}
	if len(w.q) >= m.QueueSize {
		old := w.q[0]
		w.q = w.q[1:]
		dropped = old.key
		m.Metrics.count(w.typ, ResultDropped)
		m.Log.Warn("notifier queue full; dropping its oldest message", "ns", w.ns, "notifier", w.name, "kind", old.msg.Kind, "status", old.msg.Status)
	}
	w.q = append(w.q, it)
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return dropped
}

func (m *Manager) work(ctx context.Context, key string, w *worker) {
	defer m.wg.Done()
	idle := time.NewTimer(m.IdleTimeout)
	defer idle.Stop()
	for {
		m.mu.Lock()
		if len(w.q) > 0 {
			it := w.q[0]
			w.q = w.q[1:]
			m.mu.Unlock()
			// Unsettled (ctx ended), the entry stays for the next run.
			if m.deliver(ctx, w, it.msg) && it.key != "" {
				m.unpersist(ctx, it.key)
			}
			if !idle.Stop() {
				select {
				case <-idle.C:
				default:
				}
			}
			idle.Reset(m.IdleTimeout)
			continue
		}
		m.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-w.wake:
		case <-idle.C:
			m.mu.Lock()
			if len(w.q) == 0 {
				delete(m.workers, key)
				m.mu.Unlock()
				return
			}
			m.mu.Unlock()
		}
	}
}

// outcome is the result of one attempt.
type outcome struct {
	status     int
	err        error
	retryable  bool
	refused    bool
	retryAfter time.Duration
}

// deliver tries one message until it is delivered, fails for good, or
// ctx ends; it reports whether the message is settled (not ctx ending).
func (m *Manager) deliver(ctx context.Context, w *worker, msg Message) (settled bool) {
	for attempt := 1; ; attempt++ {
		n, ok := m.notifiers.Get(w.ns, w.name)
		if !ok {
			m.Metrics.count(w.typ, ResultDropped)
			m.Log.Info("notifier deleted; dropping its pending message", "ns", w.ns, "notifier", w.name, "kind", msg.Kind, "status", msg.Status)
			return true
		}
		o := m.attempt(ctx, n, &msg, m.allowPrivate(w.ns))
		if ctx.Err() != nil {
			return false
		}
		switch {
		case o.err == nil:
			m.Metrics.count(n.Spec.Type, ResultDelivered)
			m.Log.Debug("notification delivered", "ns", w.ns, "notifier", w.name, "kind", msg.Kind, "status", msg.Status, "attempt", attempt)
			m.record(ctx, w, "")
			return true
		case o.refused:
			m.Metrics.count(n.Spec.Type, ResultRefused)
			m.Log.Warn("notification target refused", "ns", w.ns, "notifier", w.name, "err", o.err)
			m.record(ctx, w, o.err.Error())
			return true
		case !o.retryable || attempt >= m.Retry.Attempts:
			m.Metrics.count(n.Spec.Type, ResultFailed)
			m.Log.Warn("notification failed; giving up", "ns", w.ns, "notifier", w.name, "kind", msg.Kind, "status", msg.Status, "attempts", attempt, "err", o.err)
			m.record(ctx, w, fmt.Sprintf("%v (after %d attempts)", o.err, attempt))
			return true
		}
		m.Metrics.count(n.Spec.Type, ResultRetried)
		wait := m.backoff(attempt, o.retryAfter)
		m.Log.Debug("notification attempt failed; retrying", "ns", w.ns, "notifier", w.name, "attempt", attempt, "in", wait, "err", o.err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
	}
}

// backoff is the wait after the attempt-th failure: Base doubled per
// failure, capped at Max, jittered to between half and all of it; a
// server's Retry-After wins when it is longer (still capped).
func (m *Manager) backoff(attempt int, retryAfter time.Duration) time.Duration {
	d := m.Retry.Base
	for i := 1; i < attempt && d < m.Retry.Max; i++ {
		d *= 2
	}
	d = min(d, m.Retry.Max)
	d = d/2 + rand.N(d/2+1)
	if retryAfter > d {
		d = min(retryAfter, m.Retry.Max)
	}
	return d
}

// allowPrivate reads the namespace policy from the informer. (A list,
// not Get: the informer keys cluster-scoped objects by bare name but its
// Get joins namespace and name.)
func (m *Manager) allowPrivate(ns string) bool {
	found := m.namespaces.List(func(n *v1.Namespace) bool { return n.Metadata.Name == ns })
	return len(found) == 1 && found[0].Spec.Policy != nil && found[0].Spec.Policy.AllowPrivateTargets
}

// record writes the outcome into the Notifier's status. A failed write
// only loses a counter, so it is logged and not retried.
func (m *Manager) record(ctx context.Context, w *worker, errMsg string) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	now := m.Now().UTC()
	_, err := store.Mutate(ctx, m.Store, w.ns, w.name, func(n *v1.Notifier) error {
		if errMsg == "" {
			n.Status.Delivered++
			n.Status.LastDelivery = &now
			n.Status.LastError = ""
		} else {
			n.Status.Failed++
			n.Status.LastError = errMsg
		}
		return nil
	})
	if err != nil && !errors.Is(err, v1.ErrNotFound) && ctx.Err() == nil {
		m.Log.Debug("record notifier status", "ns", w.ns, "notifier", w.name, "err", err)
	}
}

// target resolves a notifier's URL.
func (m *Manager) target(ctx context.Context, n *v1.Notifier) (*url.URL, error) {
	raw := n.Spec.URL
	if n.Spec.URLFrom != nil {
		if m.Secrets == nil {
			return nil, fmt.Errorf("%w: notifier %s reads its URL from secret %s, but this server cannot read secrets", v1.ErrUnavailable, n.Metadata.Name, n.Spec.URLFrom.Name)
		}
		ref := n.Spec.URLFrom
		s, err := m.Secrets(ctx, n.Metadata.Namespace, *ref)
		if errors.Is(err, v1.ErrNotFound) {
			return nil, fmt.Errorf("notifier %s reads its URL from secret %s key %s, which does not exist: %w; add the key to the secret or change urlFrom", n.Metadata.Name, ref.Name, ref.Key, err)
		}
		if err != nil {
			return nil, fmt.Errorf("read the URL of notifier %s from secret %s key %s: %w", n.Metadata.Name, ref.Name, ref.Key, err)
		}
		raw = strings.TrimSpace(s)
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// Not the URL itself: it may be a credential.
		return nil, fmt.Errorf("%w: notifier %s has no valid http or https URL", v1.ErrInvalid, n.Metadata.Name)
	}
	return u, nil
}

// Redact shows a webhook URL without what may be a credential: its
// path, query and user information.
func Redact(u *url.URL) string {
	s := u.Scheme + "://" + u.Host
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
		s += "/…"
	}
	return s
}

// attempt makes one delivery attempt.
func (m *Manager) attempt(ctx context.Context, n *v1.Notifier, msg *Message, allowPrivate bool) outcome {
	u, err := m.target(ctx, n)
	if err != nil {
		// With a secret reader, the only target errors that may pass
		// are the reader's own: a store that did not answer in time.
		return outcome{err: err, retryable: n.Spec.URLFrom != nil && m.Secrets != nil && transient(err)}
	}
	b, err := body(n.Spec.Type, msg)
	if err != nil {
		return outcome{err: err}
	}
	ctx, cancel := context.WithTimeout(ctx, m.Retry.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(b))
	if err != nil {
		return outcome{err: fmt.Errorf("%w: request to %s: %v", v1.ErrInvalid, Redact(u), redactErr(err))}
	}
	for k, v := range n.Spec.Headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "gantry-notify/"+PayloadVersion)
	req.Header.Set("X-Gantry-Delivery", msg.ID)
	req.Header.Set("X-Gantry-Event", msg.Kind+"/"+msg.Status)
	c := m.strict
	if allowPrivate {
		c = m.open
	}
	resp, err := c.Do(req)
	if err != nil {
		err = fmt.Errorf("POST %s: %w", Redact(u), redactErr(err))
		if errors.Is(err, ErrTargetRefused) {
			return outcome{err: err, refused: true}
		}
		return outcome{err: err, retryable: true}
	}
	defer resp.Body.Close()
	// One byte more than answer keeps, so that it can tell where the
	// rune that byte belongs to starts.
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody+1))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // let the connection be reused
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return outcome{status: resp.StatusCode}
	}
	o := outcome{status: resp.StatusCode, err: fmt.Errorf("POST %s: %s%s", Redact(u), resp.Status, answer(scrubURL(snippet, u)))}
	switch {
	case resp.StatusCode == http.StatusRequestTimeout, resp.StatusCode == http.StatusTooEarly,
		resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode >= 500:
		o.retryable = true
		o.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), m.Now())
	}
	return o
}

// scrubURL replaces in an error answer the parts of u that may be
// credentials (its path, query and password, whole or piece by piece)
// with "…": many servers echo the request path in an error page
// ("Cannot POST /services/T0/B0/TOKEN"). A piece cut off at the end of
// b, by the read limit, goes too.
func scrubURL(b []byte, u *url.URL) []byte {
	var secrets []string
	add := func(s string, least int) {
		if len(s) >= least {
			secrets = append(secrets, s)
		}
	}
	for _, p := range []string{u.Path, u.EscapedPath()} {
		if p != "/" {
			add(p, 1)
		}
		for _, seg := range strings.Split(p, "/") {
			add(seg, 8)
		}
	}
	add(u.RawQuery, 1)
	for _, vs := range u.Query() {
		for _, v := range vs {
			add(v, 8)
		}
	}
	if pw, ok := u.User.Password(); ok {
		add(pw, 1)
	}
	if len(secrets) == 0 {
		return b
	}
	// The longest first, so that a whole path goes before its pieces.
	slices.SortFunc(secrets, func(a, b string) int { return len(b) - len(a) })
	s := string(b)
	for _, sec := range secrets {
		s = strings.ReplaceAll(s, sec, "…")
	}
	for _, sec := range secrets {
		for k := len(sec) - 1; k >= 4; k-- {
			if strings.HasSuffix(s, sec[:k]) {
				s = s[:len(s)-k] + "…"
				break
			}
		}
	}
	return []byte(s)
}

// redactErr drops the URL from the *url.Error the HTTP client returns,
// keeping the cause.
func redactErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// transient reports whether err may pass on its own: the store did not
// answer, or not in time.
func transient(err error) bool {
	return errors.Is(err, v1.ErrUnavailable) || errors.Is(err, v1.ErrTooManyRequest) || errors.Is(err, context.DeadlineExceeded)
}

// maxAnswer bounds the part of an error response shown in LastError.
const maxAnswer = 200

// answer formats the start of an error response body for LastError:
// of its first maxErrorBody bytes, whitespace collapsed, at most
// maxAnswer bytes.
func answer(b []byte) string {
	s := strings.Join(strings.Fields(cut(string(b), maxErrorBody)), " ")
	if s == "" {
		return ""
	}
	if len(s) > maxAnswer {
		s = cut(s, maxAnswer) + "…"
	}
	return ": " + s
}

// cut shortens s to at most n bytes without splitting a UTF-8 sequence.
// Bytes that are not UTF-8 are cut at n.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for i := n; i >= 0 && i > n-utf8.UTFMax; i-- {
		if utf8.RuneStart(s[i]) {
			return s[:i]
		}
	}
	return s[:n]
}

func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return t.Sub(now)
	}
	return 0
}

// Result is the outcome of a test delivery.
type Result struct {
	Notifier  string `json:"notifier"`
	Type      string `json:"type"`
	Delivered bool   `json:"delivered"`
	// Target is the URL's scheme and host (never its path: it may be a
	// credential).
	Target     string  `json:"target,omitempty"`
	StatusCode int     `json:"statusCode,omitempty"`
	Error      string  `json:"error,omitempty"`
	Refused    bool    `json:"refused,omitempty"`
	Seconds    float64 `json:"seconds"`
}

// Test sends a test message to n now, in one attempt, and reports what
// happened. It reads the namespace policy from the store, so that an
// admin's change applies at once. It does not touch n's status.
func (m *Manager) Test(ctx context.Context, n *v1.Notifier) Result {
	m.init()
	res := Result{Notifier: n.Metadata.Name, Type: n.Spec.Type}
	if u, err := m.target(ctx, n); err == nil {
		res.Target = Redact(u)
	}
	allow := false
	if ns, err := store.Get[*v1.Namespace](ctx, m.Store, "", n.Metadata.Namespace); err == nil {
		allow = ns.Spec.Policy != nil && ns.Spec.Policy.AllowPrivateTargets
	}
	msg := Message{
		Kind: KindTest, Status: StatusTest, Namespace: n.Metadata.Namespace,
		Message: fmt.Sprintf("test notification for notifier %s in namespace %s", n.Metadata.Name, n.Metadata.Namespace),
	}
	msg.complete(m.Now(), m.ClusterURL)
	start := time.Now()
	o := m.attempt(ctx, n, &msg, allow)
	res.Seconds = time.Since(start).Seconds()
	res.StatusCode = o.status
	switch {
	case o.err == nil:
		res.Delivered = true
		m.Metrics.count(n.Spec.Type, ResultDelivered)
	case o.refused:
		res.Refused = true
		res.Error = o.err.Error()
		m.Metrics.count(n.Spec.Type, ResultRefused)
	default:
		res.Error = o.err.Error()
		m.Metrics.count(n.Spec.Type, ResultFailed)
	}
	return res
}

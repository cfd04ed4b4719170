package scheduler

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/store"
)

// Recorder records events about objects. The scheduler calls it from the
// goroutine that did the write, never from its loop, so an implementation
// may block on a store write of its own.
type Recorder interface {
	Eventf(ctx context.Context, obj v1.Object, eventType, reason, format string, args ...any)
}

// Event reasons, and the Status.Reason values the scheduler writes.
const (
	// ReasonScheduled: the instance was bound to a node.
	ReasonScheduled = "Scheduled"
	// ReasonFailedScheduling: no node can take the instance (event).
	ReasonFailedScheduling = "FailedScheduling"
	// ReasonUnschedulable is the Status.Reason of a Pending instance that
	// no node can take; Status.Message says why.
	ReasonUnschedulable = "Unschedulable"
)

// DefaultMaxInflight is how many store writes the scheduler has in flight
// at most when MaxInflight is not set.
const DefaultMaxInflight = 16

const (
	// After losing a watch the first relist is quick; repeated failures
	// back off.
	minResyncDelay = 100 * time.Millisecond
	maxResyncDelay = 5 * time.Second
	// errorRetryDelay is how long an instance whose write failed on a
	// store error waits before it is tried again.
	errorRetryDelay = time.Second
	// writeTimeout bounds one store write (a bind or a status update).
	writeTimeout = 10 * time.Second
)

// Scheduler binds pending Instances to Nodes. Set the fields, then call Run.
type Scheduler struct {
	Store *store.Store
	// Recorder receives Scheduled and FailedScheduling events; nil drops
	// them.
	Recorder Recorder
	// Log defaults to discarding.
	Log *slog.Logger
	// Metrics defaults to a set registered nowhere.
	Metrics *Metrics
	// MaxInflight caps concurrent store writes; 0 means
	// DefaultMaxInflight.
	MaxInflight int
}

// Run schedules until ctx ends, then lets the writes in flight finish
// (each within writeTimeout) and returns nil. It lists Nodes and Instances, then follows their watches;
// when a watch fails it lists again, so it never acts on a partial view.
func (s *Scheduler) Run(ctx context.Context) error {
	if s.Store == nil {
		return fmt.Errorf("scheduler: %w: Store is required", v1.ErrInvalid)
	}
	log := s.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := s.Metrics
	if m == nil {
		m = NewMetrics(nil)
	}
	delay := minResyncDelay
	for {
		began := time.Now()
		err := s.session(ctx, log, m)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(began) > time.Minute {
			delay = minResyncDelay
		}
		log.Warn("scheduler lost its watch; listing again", "err", err, "in", delay)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		delay = min(2*delay, maxResyncDelay)
	}
}

// loop is the state of one list-and-watch session. Only the session's
// goroutine touches it; store writes run in their own goroutines and report
// back through results.
type loop struct {
	s   *Scheduler
	ctx context.Context
	log *slog.Logger
	m   *Metrics

	snap *Snapshot
	// pending are the instances waiting for a node, by key.
	pending map[string]*entry
	seq     uint64
	// assumed are binds this loop made whose result the watch has not
	// shown yet. Their resources are already held in snap so the next
	// placement sees them; a failed bind gives them back.
	assumed map[string]assumption
	// busy marks instances with a write in flight: one at a time each.
	busy     map[string]bool
	inflight int
	results  chan result
	sem      chan struct{}

	// retry asks for every pending instance to be tried again once the
	// events already queued are handled: something changed that may
	// make room.
	retry  bool
	timer  *time.Timer
	timerC <-chan time.Time
}

type assumption struct {
	node string
	// rev is the store revision of the committed bind; 0 while the
	// write is in flight. Watch events older than it are stale.
	rev int64
}

type entry struct {
	inst *v1.Instance // newest version seen
	req  Request
	seq  uint64    // arrival order: older instances are tried first
	seen time.Time // first seen pending
	// retryAfterWrite: a retry pass skipped this instance because a
	// write of its was in flight; it is tried again when that ends.
	retryAfterWrite bool
}

type result struct {
	key   string
	bind  bool // a bind, else an unschedulable status write
	node  string
	rev   int64     // of the committed write
	start time.Time // when the placement attempt began
	seen  time.Time
	err   error
}

var (
	errAlreadyBound = errors.New("already bound")
	errGone         = errors.New("being deleted")
)

var (
	nodeKind     = store.KindFor[*v1.Node]()
	instanceKind = store.KindFor[*v1.Instance]()
)

func (s *Scheduler) session(ctx context.Context, log *slog.Logger, m *Metrics) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	nodes, nodeRev, err := store.List[*v1.Node](ctx, s.Store, store.ListOptions{})
	if err != nil {
		return fmt.Errorf("list nodes: %w", err)
	}
	insts, instRev, err := store.List[*v1.Instance](ctx, s.Store, store.ListOptions{})
	if err != nil {
		return fmt.Errorf("list instances: %w", err)
	}
	inflight := s.MaxInflight
	if inflight <= 0 {
		inflight = DefaultMaxInflight
	}
	l := &loop{
		s: s, ctx: ctx, log: log, m: m,
		snap:    NewSnapshot(nodes, nil),
		pending: map[string]*entry{},
		assumed: map[string]assumption{},
		busy:    map[string]bool{},
		results: make(chan result),
		sem:     make(chan struct{}, inflight),
	}
	// Writes in flight finish before the next session lists, so it sees
	// what they did.
	defer l.drain()

	var waiting []*v1.Instance
	for _, inst := range insts {
		switch {
		case counts(inst) || holdsPorts(inst):
			l.snap.SetInstance(inst)
		case inst.Spec.Node == "" && inst.Metadata.Deleting == nil:
			waiting = append(waiting, inst)
		}
	}
	nodeEvents := s.Store.Watch(ctx, nodeKind, store.WatchOptions{Revision: nodeRev + 1})
	instEvents := s.Store.Watch(ctx, instanceKind, store.WatchOptions{Revision: instRev + 1})
	log.Info("scheduler started", "nodes", l.snap.Len(), "placed", len(insts)-len(waiting), "pending", len(waiting))

	slices.SortFunc(waiting, func(a, b *v1.Instance) int {
		if c := a.Metadata.Created.Compare(b.Metadata.Created); c != 0 {
			return c
		}
		return cmp.Compare(a.Metadata.Key(), b.Metadata.Key())
	})
	for _, inst := range waiting {
		l.onPending(inst)
	}
	for {
		m.Pending.Set(float64(len(l.pending)))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev, ok := <-nodeEvents:
			if !ok {
				return fmt.Errorf("node watch closed")
			}
			if err := l.onNode(ev); err != nil {
				return err
			}
		case ev, ok := <-instEvents:
			if !ok {
				return fmt.Errorf("instance watch closed")
			}
			if err := l.onInstance(ev); err != nil {
				return err
			}
		case r := <-l.results:
			l.onResult(r)
		case <-l.timerC:
			l.timerC = nil
			l.retry = true
		}
		// Retries wait until the events already delivered are handled,
		// so a burst of node updates costs one pass, not one per event.
		if l.retry && len(nodeEvents) == 0 && len(instEvents) == 0 {
			l.retryPending()
		}
	}
}

func (l *loop) onNode(ev store.Event) error {
	switch ev.Type {
	case store.Added, store.Modified:
		if l.snap.SetNode(ev.Object.(*v1.Node)) {
			l.retry = true
		}
	case store.Deleted:
		l.snap.RemoveNode(ev.Object.GetMeta().Name)
	case store.Error:
		return ev.Err
	}
	return nil
}

func (l *loop) onInstance(ev store.Event) error {
	switch ev.Type {
	case store.Error:
		return ev.Err
	case store.Bookmark:
		return nil
	}
	inst := ev.Object.(*v1.Instance)
	key := inst.Metadata.Key()
	switch {
	case ev.Type == store.Deleted:
		delete(l.pending, key)
		delete(l.assumed, key)
		if l.snap.Release(key) {
			l.retry = true
		}
	case inst.Spec.Node != "":
		// Bound, by us or anyone: the store's word replaces any
		// assumption.
		delete(l.pending, key)
		delete(l.assumed, key)
		if l.snap.SetInstance(inst) {
			l.retry = true
		}
	default:
		a, ours := l.assumed[key]
		if ours && a.rev > 0 && inst.Metadata.Revision < a.rev {
			// The watch lags behind our committed bind: this is an
			// older version, already superseded.
			return nil
		}
		// While our bind is in flight the watch still shows the
		// instance unbound; keep the resources it was assumed to hold.
		if !ours && l.snap.Release(key) {
			l.retry = true
		}
		if inst.Metadata.Deleting != nil {
			delete(l.pending, key)
			return nil
		}
		l.onPending(inst)
	}
	return nil
}

// onPending records the newest version of an unbound instance and tries to
// place it at once.
func (l *loop) onPending(inst *v1.Instance) {
	key := inst.Metadata.Key()
	e := l.pending[key]
	if e == nil {
		// Instances that were waiting before this one go first when
		// something just made room.
		l.retryPending()
		l.seq++
		e = &entry{seq: l.seq, seen: time.Now()}
		l.pending[key] = e
	}
	e.inst = inst
	e.req = RequestFor(inst)
	if !l.busy[key] {
		l.try(e)
	}
}

// retryPending tries every pending instance without a write in flight,
// oldest first, if a retry was asked for.
//
// Instances of one app revision ask for the same thing, and nothing in a
// pass adds room, so once a request has found no node the others like it
// reuse that answer instead of each explaining it again over every node.
func (l *loop) retryPending() {
	if !l.retry {
		return
	}
	l.retry = false
	var todo []*entry
	for key, e := range l.pending {
		if l.busy[key] {
			// What made room may fit it too: the end of its write
			// asks for another pass.
			e.retryAfterWrite = true
			continue
		}
		todo = append(todo, e)
	}
	slices.SortFunc(todo, func(a, b *entry) int { return cmp.Compare(a.seq, b.seq) })
	noFit := map[string]error{}
	var kb []byte
	for _, e := range todo {
		key := e.inst.Metadata.Key()
		if l.pending[key] != e || l.busy[key] {
			continue
		}
		kb = fitKey(kb[:0], &e.req)
		if err, ok := noFit[string(kb)]; ok {
			l.unschedulable(e, err, time.Now())
			continue
		}
		if err := l.try(e); err != nil {
			noFit[string(kb)] = err
		}
	}
}

// try places one pending instance. On success it assumes the placement in
// the snapshot and starts the bind; otherwise it records why and returns
// Place's error.
func (l *loop) try(e *entry) error {
	key := e.inst.Metadata.Key()
	start := time.Now()
	node, err := Place(l.snap, &e.req)
	l.m.PlaceSeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		l.unschedulable(e, err, start)
		return err
	}
	inst, seen := e.inst, e.seen
	l.snap.Assign(key, node, &e.req)
	l.assumed[key] = assumption{node: node}
	l.write(key, func(ctx context.Context) result {
		bound, err := l.s.bind(ctx, inst, node)
		r := result{bind: true, node: node, start: start, seen: seen, err: err}
		if err == nil {
			r.rev = bound.Metadata.Revision
			if l.s.Recorder != nil {
				l.s.Recorder.Eventf(ctx, bound, v1.EventNormal, ReasonScheduled, "Bound to node %s", node)
			}
		}
		return r
	})
	return nil
}

// unschedulable records in the instance's status why it cannot be placed,
// unless the status already says so.
func (l *loop) unschedulable(e *entry, err error, start time.Time) {
	l.m.Attempts.WithLabelValues(resultUnschedulable).Inc()
	key, inst, msg := e.inst.Metadata.Key(), e.inst, err.Error()
	if st := inst.Status; st.Phase == v1.PhasePending && st.Reason == ReasonUnschedulable && st.Message == msg {
		return
	}
	l.write(key, func(ctx context.Context) result {
		marked, err := l.s.markUnschedulable(ctx, inst, msg)
		if err == nil && marked != nil {
			l.log.Info("instance unschedulable", "instance", key, "reason", msg)
			if l.s.Recorder != nil {
				l.s.Recorder.Eventf(ctx, marked, v1.EventWarning, ReasonFailedScheduling, "%s", msg)
			}
		}
		return result{start: start, err: err}
	})
}

// write runs a store write for one instance in its own goroutine, at most
// MaxInflight at a time, and reports the result to the loop.
//
// A write that has started is finished even if the scheduler is stopped
// meanwhile (within writeTimeout): abandoning it would leave the loop not
// knowing whether a bind it decided was committed. The revision check, not
// the context, is what keeps a stale write out.
func (l *loop) write(key string, do func(context.Context) result) {
	l.busy[key] = true
	l.inflight++
	go func() {
		l.sem <- struct{}{}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(l.ctx), writeTimeout)
		r := do(ctx)
		cancel()
		<-l.sem
		r.key = key
		// The loop receives results until none are in flight, even
		// while it stops, so this send always completes.
		l.results <- r
	}()
}

func (l *loop) onResult(r result) {
	l.inflight--
	delete(l.busy, r.key)
	if e := l.pending[r.key]; e != nil && e.retryAfterWrite {
		e.retryAfterWrite = false
		l.retry = true
	}
	switch {
	case r.bind && r.err == nil:
		now := time.Now()
		l.m.Attempts.WithLabelValues(resultScheduled).Inc()
		l.m.BindSeconds.Observe(now.Sub(r.start).Seconds())
		l.m.PendingSeconds.Observe(now.Sub(r.seen).Seconds())
		// The watch confirms the bind shortly; until then the
		// assumption holds the node's resources.
		delete(l.pending, r.key)
		if a, ok := l.assumed[r.key]; ok && a.node == r.node {
			l.assumed[r.key] = assumption{node: r.node, rev: r.rev}
		}
		l.log.Debug("instance bound", "instance", r.key, "node", r.node, "took", now.Sub(r.start))
		return
	case r.bind:
		if a, ok := l.assumed[r.key]; ok && a.node == r.node {
			delete(l.assumed, r.key)
			if l.snap.Release(r.key) {
				l.retry = true
			}
		}
	case r.err == nil:
		return
	}
	if errors.Is(r.err, errAlreadyBound) || errors.Is(r.err, errGone) || errors.Is(r.err, v1.ErrNotFound) {
		// Someone else bound or deleted it; the watch brings the news.
		l.m.Attempts.WithLabelValues(resultConflict).Inc()
		l.log.Debug("instance changed under the scheduler", "instance", r.key, "err", r.err)
		return
	}
	if l.ctx.Err() != nil {
		return
	}
	l.m.Attempts.WithLabelValues(resultError).Inc()
	l.log.Warn("scheduler write failed; retrying", "instance", r.key, "err", r.err, "in", errorRetryDelay)
	if l.timerC == nil {
		l.timer = time.NewTimer(errorRetryDelay)
		l.timerC = l.timer.C
	}
}

// drain waits for the writes in flight and counts their outcome; the
// state they would update is about to be thrown away.
func (l *loop) drain() {
	for l.inflight > 0 {
		l.onResult(<-l.results)
	}
	if l.timer != nil {
		l.timer.Stop()
	}
}

// bind writes the placement of inst on node, guarded by the revision inst
// was read at. If the instance changed since, it is read again and bound
// only if it is still unbound and not being deleted: the revision check is
// what keeps two schedulers from binding one instance twice.
func (s *Scheduler) bind(ctx context.Context, inst *v1.Instance, node string) (*v1.Instance, error) {
	// A shallow copy: the loop's object is shared and never modified, and
	// setBound only assigns fields.
	b := *inst
	setBound(&b, node)
	err := s.Store.Update(ctx, &b)
	if err == nil {
		return &b, nil
	}
	if !errors.Is(err, v1.ErrConflict) {
		return nil, fmt.Errorf("bind %s to %s: %w", inst.Metadata.Key(), node, err)
	}
	bound, err := store.Mutate(ctx, s.Store, inst.Metadata.Namespace, inst.Metadata.Name, func(i *v1.Instance) error {
		if i.Spec.Node != "" {
			return fmt.Errorf("instance %s: %w to node %s", i.Metadata.Key(), errAlreadyBound, i.Spec.Node)
		}
		if i.Metadata.Deleting != nil || i.Metadata.UID != inst.Metadata.UID {
			// Being deleted, or deleted and made again under its
			// name: the decision was for another object.
			return fmt.Errorf("instance %s: %w", i.Metadata.Key(), errGone)
		}
		setBound(i, node)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("bind %s to %s: %w", inst.Metadata.Key(), node, err)
	}
	return bound, nil
}

func setBound(i *v1.Instance, node string) {
	i.Spec.Node = node
	i.Status.Node = node
	i.Status.Phase = v1.PhasePending
	i.Status.Reason = ReasonScheduled
	i.Status.Message = "bound to node " + node + "; waiting for its agent to start it"
}

// markUnschedulable records in an unbound instance's status why it cannot
// be placed. It returns the written instance, or nil when the status
// already said so.
func (s *Scheduler) markUnschedulable(ctx context.Context, inst *v1.Instance, msg string) (*v1.Instance, error) {
	c := *inst
	setUnschedulable(&c, msg)
	err := s.Store.Update(ctx, &c)
	if err == nil {
		return &c, nil
	}
	if !errors.Is(err, v1.ErrConflict) {
		return nil, fmt.Errorf("mark %s unschedulable: %w", inst.Metadata.Key(), err)
	}
	written := false
	marked, err := store.Mutate(ctx, s.Store, inst.Metadata.Namespace, inst.Metadata.Name, func(i *v1.Instance) error {
		written = false
		if i.Spec.Node != "" {
			return fmt.Errorf("instance %s: %w to node %s", i.Metadata.Key(), errAlreadyBound, i.Spec.Node)
		}
		if i.Metadata.Deleting != nil {
			return fmt.Errorf("instance %s: %w", i.Metadata.Key(), errGone)
		}
		if st := i.Status; st.Phase == v1.PhasePending && st.Reason == ReasonUnschedulable && st.Message == msg {
			return store.ErrUnchanged
		}
		setUnschedulable(i, msg)
		written = true
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("mark %s unschedulable: %w", inst.Metadata.Key(), err)
	}
	if !written {
		return nil, nil
	}
	return marked, nil
}

func setUnschedulable(i *v1.Instance, msg string) {
	i.Status.Phase = v1.PhasePending
	i.Status.Node = ""
	i.Status.Reason = ReasonUnschedulable
	i.Status.Message = msg
}

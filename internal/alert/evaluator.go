package alert

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/informer"
	"github.com/gantry-dev/gantry/internal/metrics"
	"github.com/gantry-dev/gantry/internal/notify"
	"github.com/gantry-dev/gantry/internal/store"
)

// Sender takes notifications without blocking (notify.Manager).
type Sender interface {
	Send(ctx context.Context, ns string, names []string, msg notify.Message)
}

// Recorder records events about objects (events.Recorder).
type Recorder interface {
	Eventf(ctx context.Context, obj v1.Object, eventType, reason, format string, args ...any)
}

// Event reasons the evaluator records on AlertRules.
const (
	ReasonFiring   = "AlertFiring"
	ReasonResolved = "AlertResolved"
)

// Defaults for Evaluator fields left zero.
const (
	DefaultInterval    = 5 * time.Second
	DefaultStatusEvery = time.Minute
	// minGap coalesces the evaluations agents' reports trigger: with
	// many nodes, reports arrive all the time.
	minGap = time.Second
	// restartHistory is how long restart observations are kept when no
	// rule asks for a longer window.
	restartHistory = time.Hour
)

// Evaluator evaluates every AlertRule. Fill in the fields and call Run.
type Evaluator struct {
	Store *store.Store
	// Window holds the metrics; nil disables cpu and memory rules.
	Window *metrics.Window
	// Notify gets a message on every firing and resolved transition.
	Notify Sender
	// Recorder may be nil (no events).
	Recorder Recorder
	Log      *slog.Logger
	// Metrics may be nil.
	Metrics *Metrics
	// Interval between evaluations (default 5 s); reports from agents
	// trigger extra ones.
	Interval time.Duration
	// StatusEvery is how often a rule's status is rewritten when only
	// lastEvaluated, the value or the message changed (default 1 min).
	StatusEvery time.Duration
	// Now is the clock (default time.Now); tests pass a fake one.
	Now func() time.Time
	// Instances may be an informer shared with other controllers (the
	// evaluator only reads it; its owner runs it). Nil: a private one.
	Instances *informer.Informer[*v1.Instance]
	// Apps may be an informer shared with other components (nil: a
	// private one).
	Apps *informer.Informer[*v1.App]

	once      sync.Once
	private   []func(context.Context)
	rules     *informer.Informer[*v1.AlertRule]
	apps      *informer.Informer[*v1.App]
	nodes     *informer.Informer[*v1.Node]
	kick      chan struct{}
	ready     chan struct{}
	evalMu    sync.Mutex
	restarts  restartLog
	lastRules map[string]*v1.AlertRule
	// started is when Run had synced: the metrics window and the
	// restart history, which the instance conditions read, are in
	// memory and begin empty then (see warmingUp).
	started time.Time
}

func (e *Evaluator) init() {
	e.once.Do(func() {
		if e.Log == nil {
			e.Log = slog.New(slog.DiscardHandler)
		}
		if e.Interval <= 0 {
			e.Interval = DefaultInterval
		}
		if e.StatusEvery <= 0 {
			e.StatusEvery = DefaultStatusEvery
		}
		if e.Now == nil {
			e.Now = time.Now
		}
		e.rules = informer.New[*v1.AlertRule](e.Store, e.Log)
		e.nodes = informer.New[*v1.Node](e.Store, e.Log)
		e.private = []func(context.Context){e.rules.Run, e.nodes.Run}
		if e.apps = e.Apps; e.apps == nil {
			e.apps = informer.New[*v1.App](e.Store, e.Log)
			e.private = append(e.private, e.apps.Run)
		}
		if e.Instances == nil {
			e.Instances = informer.New[*v1.Instance](e.Store, e.Log)
			e.private = append(e.private, e.Instances.Run)
		}
		e.kick = make(chan struct{}, 1)
		e.ready = make(chan struct{})
		e.lastRules = map[string]*v1.AlertRule{}
	})
}

// Ready is closed once the evaluator's informers have synced and
// Evaluate may be called.
func (e *Evaluator) Ready() <-chan struct{} {
	e.init()
	return e.ready
}

// Run evaluates every Interval and after agents' reports until ctx ends.
func (e *Evaluator) Run(ctx context.Context) {
	e.init()
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, run := range e.private {
		wg.Add(1)
		go func() { defer wg.Done(); run(ctx) }()
	}
	for _, ch := range []<-chan struct{}{e.rules.Synced(), e.apps.Synced(), e.nodes.Synced(), e.Instances.Synced()} {
		select {
		case <-ctx.Done():
			return
		case <-ch:
		}
	}
	e.started = e.Now()
	close(e.ready)
	if e.Window != nil {
		e.Window.OnReport(func(metrics.Report) {
			select {
			case e.kick <- struct{}{}:
			default:
			}
		})
	}
	tick := time.NewTicker(e.Interval)
	defer tick.Stop()
	for {
		start := time.Now()
		if err := e.Evaluate(ctx); err != nil && ctx.Err() == nil {
			e.Log.Warn("evaluate alert rules", "err", err)
		}
		if wait := minGap - time.Since(start); wait > 0 {
			informer.Sleep(ctx, wait)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-e.kick:
		}
	}
}

// Evaluate runs one pass over every rule. Run calls it; tests call it
// directly with a fake clock once Ready is closed.
func (e *Evaluator) Evaluate(ctx context.Context) error {
	e.init()
	e.evalMu.Lock()
	defer e.evalMu.Unlock()
	now := e.Now().UTC()
	rules := e.rules.List(nil)
	slices.SortFunc(rules, func(a, b *v1.AlertRule) int {
		if a.Metadata.Key() < b.Metadata.Key() {
			return -1
		}
		return 1
	})
	keep := restartHistory
	for _, r := range rules {
		if r.Spec.Condition == v1.AlertRestarts {
			keep = max(keep, r.Spec.Window.D())
		}
	}
	instances := e.Instances.List(nil)
	e.restarts.observe(now, instances, keep)
	snap := &snapshot{
		now: now, window: e.Window, instances: instances,
		apps: e.apps.List(nil), nodes: e.nodes.List(nil),
		increase: func(i *v1.Instance, d time.Duration) (int, bool) { return e.restarts.increase(e.Window, now, i, d) },
	}
	// Rules gone since the last pass, or deleted and made again under
	// their name, end their alert first: a new rule of the name may fire
	// in this pass, after the old one's resolved message.
	uids := make(map[string]string, len(rules))
	for _, r := range rules {
		uids[r.Metadata.Key()] = r.Metadata.UID
	}
	for key, r := range e.lastRules {
		uid, ok := uids[key]
		if ok && uid == r.Metadata.UID {
			continue
		}
		if !ok && e.Metrics != nil {
			ns, name := splitKey(key)
			e.Metrics.Firing.DeleteLabelValues(ns, name)
		}
		if r.Status.State == v1.AlertFiring {
			e.resolveDeleted(ctx, r, snap)
		}
	}
	var errs []error
	seen := make(map[string]*v1.AlertRule, len(rules))
	for _, r := range rules {
		if err := e.evaluateRule(ctx, r, snap); err != nil {
			errs = append(errs, err)
		}
		seen[r.Metadata.Key()] = r
		if cur, ok := e.rules.Get(r.Metadata.Namespace, r.Metadata.Name); ok && cur.Metadata.UID == r.Metadata.UID {
			seen[r.Metadata.Key()] = cur // with the status this pass wrote
		}
	}
	e.lastRules = seen
	err := errors.Join(errs...)
	if e.Metrics != nil {
		result := "ok"
		if err != nil {
			result = "error"
		}
		e.Metrics.Evaluations.WithLabelValues(result).Inc()
	}
	return err
}

func splitKey(key string) (string, string) {
	ns, name, _ := strings.Cut(key, "/")
	return ns, name
}

// Transitions that advance reports.
const (
	toNone     = ""
	toPending  = "pending"
	toFiring   = "firing"
	toResolved = "resolved"
	toCleared  = "cleared" // pending that never fired
	// toSpread: a firing rule's condition holds for a subject it had not
	// held for since the rule fired.
	toSpread = "spread"
)

// advance computes a rule's next status from its previous one and what
// the condition evaluation found.
func advance(prev v1.AlertRuleStatus, f finding, hold time.Duration, now time.Time) (v1.AlertRuleStatus, string) {
	st := prev
	state := prev.State
	if state == "" {
		state = v1.AlertInactive
	}
	t := now
	transition := toNone
	if f.holds() {
		switch state {
		case v1.AlertInactive:
			if hold <= 0 {
				st.State, st.Since, transition = v1.AlertFiring, &t, toFiring
			} else {
				st.State, st.Since, transition = v1.AlertPending, &t, toPending
			}
		case v1.AlertPending:
			if prev.Since == nil || now.Sub(*prev.Since) >= hold {
				st.State, st.Since, transition = v1.AlertFiring, &t, toFiring
			}
		case v1.AlertFiring:
			fired := slices.Clone(firedSubjects(prev))
			for _, subj := range f.subjects {
				if !slices.Contains(fired, subj) {
					fired = append(fired, subj)
					transition = toSpread
				}
			}
			slices.Sort(fired)
			st.FiredSubjects = fired
		}
		if transition == toFiring {
			st.FiredSubjects = slices.Clone(f.subjects)
		}
	} else {
		switch state {
		case v1.AlertPending:
			st.State, st.Since, transition = v1.AlertInactive, &t, toCleared
		case v1.AlertFiring:
			st.State, st.Since, transition = v1.AlertInactive, &t, toResolved
		default:
			st.State = v1.AlertInactive
		}
	}
	if st.State != v1.AlertFiring {
		st.FiredSubjects = nil
	}
	st.Subjects = f.subjects
	st.Value = f.value
	st.Message = f.message
	st.LastEvaluated = &t
	return st, transition
}

// significant reports whether a status change must be written now, as
// opposed to with the next periodic refresh.
func significant(a, b v1.AlertRuleStatus) bool {
	return a.State != b.State || !sameTime(a.Since, b.Since) || !slices.Equal(a.Subjects, b.Subjects) || !slices.Equal(a.FiredSubjects, b.FiredSubjects)
}

func sameTime(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b)
}

// warmUpSamples is how long after its start the evaluator waits for
// instances' usage samples before it takes their absence for a cpu or
// memory condition that no longer holds: three sampling intervals at the
// agents' default, and minFresh.
const warmUpSamples = time.Minute

// warmingUp reports whether the evaluator, started at e.started, has yet
// to see enough of the instances to tell that r's condition no longer
// holds: a cpu or memory rule until usage samples have come in, a
// restarts rule for its window (the restart history is rebuilt from what
// this process sees).
func (e *Evaluator) warmingUp(r *v1.AlertRule, now time.Time) bool {
	if e.started.IsZero() {
		return false
	}
	switch r.Spec.Condition {
	case v1.AlertCPU, v1.AlertMemory:
		return now.Sub(e.started) < warmUpSamples
	case v1.AlertRestarts:
		return now.Sub(e.started) < r.Spec.Window.D()
	}
	return false
}

func (e *Evaluator) evaluateRule(ctx context.Context, r *v1.AlertRule, snap *snapshot) error {
	f := check(r, snap)
	prev := r.Status
	if !f.holds() && f.unknown > 0 && (prev.State == v1.AlertFiring || prev.State == v1.AlertPending) && e.warmingUp(r, snap.now) {
		// A restarted server has no samples or restart history yet for
		// some instances: that says nothing about the condition, so
		// the stored state stands until it has (or until the condition
		// is seen to hold, or every instance is judged). So does its
		// gauge: a restarted server's starts out without the rule.
		e.setFiring(r, prev.State)
		return nil
	}
	st, transition := advance(prev, f, r.Spec.For.D(), snap.now)
	e.setFiring(r, st.State)
	due := prev.LastEvaluated == nil || snap.now.Sub(*prev.LastEvaluated) >= e.StatusEvery
	if !significant(prev, st) && !due {
		return nil
	}
	// Write against the revision read: if the rule changed meanwhile (a
	// user edited it, another evaluator moved it), this pass's view is
	// stale and the next pass decides again, so a transition is written —
	// and notified — once.
	upd := *r
	upd.Status = st
	if err := e.Store.Update(ctx, &upd); err != nil {
		if errors.Is(err, v1.ErrConflict) || errors.Is(err, v1.ErrNotFound) {
			e.Log.Debug("alert rule changed during evaluation; next pass decides", "rule", r.Metadata.Key(), "err", err)
			return nil
		}
		return fmt.Errorf("write status of alert rule %s: %w", r.Metadata.Key(), err)
	}
	e.rules.Observe(&upd)
	switch transition {
	case toFiring:
		e.Log.Info("alert firing", "ns", r.Metadata.Namespace, "rule", r.Metadata.Name, "subjects", st.Subjects, "value", st.Value)
		if e.Recorder != nil {
			e.Recorder.Eventf(ctx, &upd, v1.EventWarning, ReasonFiring, "%s", st.Message)
		}
		e.send(ctx, r, e.message(r, notify.StatusFiring, st, f.app))
	case toSpread:
		// Receivers hear of every subject the alert is about before the
		// resolved message names it: another firing message, for the
		// same alert (rule), with the subjects it holds for now.
		e.Log.Info("alert firing for more", "ns", r.Metadata.Namespace, "rule", r.Metadata.Name, "subjects", st.Subjects, "value", st.Value)
		if e.Recorder != nil {
			e.Recorder.Eventf(ctx, &upd, v1.EventWarning, ReasonFiring, "%s", st.Message)
		}
		e.send(ctx, r, e.message(r, notify.StatusFiring, st, f.app))
	case toResolved:
		e.Log.Info("alert resolved", "ns", r.Metadata.Namespace, "rule", r.Metadata.Name)
		// The condition no longer holds for anything, so f has no App:
		// name the one the firing subjects belong to, as the firing
		// messages did, so that receivers can pair them; and every
		// subject they named.
		fired := firedSubjects(prev)
		app := r.Spec.App
		if app == "" {
			app = snap.subjectsApp(r.Metadata.Namespace, fired)
		}
		msg := e.message(r, notify.StatusResolved, st, app)
		msg.Subjects = fired
		msg.Message = fmt.Sprintf("%s no longer holds", describe(r))
		if prev.Since != nil {
			msg.Message += fmt.Sprintf(" (firing for %s: %s)", snap.now.Sub(*prev.Since).Round(time.Second), prev.Message)
		}
		if e.Recorder != nil {
			e.Recorder.Eventf(ctx, &upd, v1.EventNormal, ReasonResolved, "%s", msg.Message)
		}
		e.send(ctx, r, msg)
	}
	return nil
}

// resolveDeleted tells the receivers of a rule deleted while it fired
// that the alert is over, so that what they opened (a page, a red chat
// message) is closed: no later pass will judge the rule again.
func (e *Evaluator) resolveDeleted(ctx context.Context, r *v1.AlertRule, snap *snapshot) {
	prev := r.Status
	st := prev
	st.State = v1.AlertInactive
	st.LastEvaluated = &snap.now
	st.Subjects, st.FiredSubjects = firedSubjects(prev), nil
	app := r.Spec.App
	if app == "" {
		app = snap.subjectsApp(r.Metadata.Namespace, st.Subjects)
	}
	msg := e.message(r, notify.StatusResolved, st, app)
	msg.Message = fmt.Sprintf("rule deleted while firing: %s", describe(r))
	if prev.Since != nil {
		msg.Message += fmt.Sprintf(" (firing for %s: %s)", snap.now.Sub(*prev.Since).Round(time.Second), prev.Message)
	}
	e.Log.Info("alert resolved: rule deleted", "ns", r.Metadata.Namespace, "rule", r.Metadata.Name)
	e.send(ctx, r, msg)
}

// firedSubjects are the subjects a firing status's notifications named:
// its FiredSubjects, or for a status stored before them its Subjects.
func firedSubjects(st v1.AlertRuleStatus) []string {
	if st.FiredSubjects != nil {
		return st.FiredSubjects
	}
	return st.Subjects
}

// setFiring sets r's gantry_alerts_firing gauge for state.
func (e *Evaluator) setFiring(r *v1.AlertRule, state string) {
	if e.Metrics == nil {
		return
	}
	v := 0.0
	if state == v1.AlertFiring {
		v = 1
	}
	e.Metrics.Firing.WithLabelValues(r.Metadata.Namespace, r.Metadata.Name).Set(v)
}

func (e *Evaluator) send(ctx context.Context, r *v1.AlertRule, msg notify.Message) {
	if e.Notify != nil {
		e.Notify.Send(ctx, r.Metadata.Namespace, r.Spec.Notifiers, msg)
	}
}

func (e *Evaluator) message(r *v1.AlertRule, status string, st v1.AlertRuleStatus, app string) notify.Message {
	sev := r.Spec.Severity
	if sev == "" {
		sev = "warning"
	}
	if app == "" {
		app = r.Spec.App
	}
	return notify.Message{
		Kind: notify.KindAlert, Status: status, Rule: r.Metadata.Name, Condition: r.Spec.Condition,
		Severity: sev, App: app, Subjects: st.Subjects, Value: st.Value, Threshold: r.Spec.Threshold,
		Message: st.Message, Description: r.Spec.Description, Since: st.Since, Time: *st.LastEvaluated,
	}
}

// describe says in words what a rule watches for.
func describe(r *v1.AlertRule) string {
	scope := "an instance"
	if r.Spec.App != "" {
		scope = "an instance of " + r.Spec.App
	}
	switch r.Spec.Condition {
	case v1.AlertCPU:
		return fmt.Sprintf("%s above %g%% of its CPU limit (or request, without one)", scope, r.Spec.Threshold)
	case v1.AlertMemory:
		return fmt.Sprintf("%s above %g%% of its memory limit", scope, r.Spec.Threshold)
	case v1.AlertRestarts:
		return fmt.Sprintf("%s restarting %g times in %s", scope, r.Spec.Threshold, r.Spec.Window)
	case v1.AlertNotReady:
		if r.Spec.App != "" {
			return "app " + r.Spec.App + " not fully ready"
		}
		return "an app not fully ready"
	case v1.AlertNodeNotReady:
		return "a node NotReady"
	}
	return r.Spec.Condition
}
